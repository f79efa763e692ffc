//! Server-sent events, as both vendors stream their answers: a decoder that frames an SSE
//! body fed in arbitrary byte chunks into events, and the machinery that turns those events
//! into an [`EventStream`] through a vendor's mapper.
//!
//! Framing follows the HTML living standard's event-stream rules: lines end in CRLF, LF or
//! CR (a CRLF split across two reads is one line end); `data:` lines of one event are joined
//! with `\n`; `event:` names the event and `id:` sets the last event id; lines starting with
//! `:` are comments (keep-alives); a blank line dispatches the event; an initial byte-order
//! mark is skipped. Lines are split on bytes before decoding, so a multi-byte character
//! split across reads arrives whole. Unlike the standard, an event left without its blank
//! line when the body ends is still dispatched: some compatible servers end that way.
//!
//! The decoder holds at most one event (plus the read in progress): an event larger than
//! its limit is an error rather than unbounded growth.

use std::collections::VecDeque;

use crate::stream::{EventStream, StreamEvent};
use crate::types::Error;

use super::http::BodyStream;

/// One server-sent event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` name; `None` for the default type (`message`).
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// The last event id the stream set, if any.
    pub id: Option<String>,
}

/// Why an SSE body could not be framed.
#[derive(Debug, thiserror::Error)]
pub enum SseError {
    /// One event (with the line being read) exceeds the decoder's limit.
    #[error("a server-sent event exceeds the limit of {limit} bytes")]
    EventTooLarge {
        /// The most bytes one event may hold.
        limit: usize,
    },
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Frames an SSE body into events. Feed it bytes with [`push`](Self::push) as they are
/// read, take events with [`next_event`](Self::next_event) until it has none, and call
/// [`end`](Self::end) when the body is over to flush what remains.
#[derive(Debug)]
pub struct SseDecoder {
    buf: Vec<u8>,
    /// Start of the bytes not yet consumed.
    pos: usize,
    /// Bytes before this index hold no line end (saves rescanning a long partial line).
    scanned: usize,
    /// The last line ended with CR: an LF right after it belongs to the same line end.
    skip_lf: bool,
    bom_checked: bool,
    ended: bool,
    event: Option<String>,
    data: String,
    id: Option<String>,
    limit: usize,
}

impl SseDecoder {
    /// A decoder that refuses events (and lines) over `limit` bytes.
    pub fn new(limit: usize) -> Self {
        SseDecoder {
            buf: Vec::new(),
            pos: 0,
            scanned: 0,
            skip_lf: false,
            bom_checked: false,
            ended: false,
            event: None,
            data: String::new(),
            id: None,
            limit,
        }
    }

    /// Adds the next bytes of the body.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.scanned -= self.pos;
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The body is over: what remains is read as if it ended with a blank line.
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// The next complete event, or `None` until more bytes arrive (or, after
    /// [`end`](Self::end), when there are no more events).
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, SseError> {
        if !self.bom_checked {
            let available = &self.buf[self.pos..];
            if available.len() < BOM.len() && BOM.starts_with(available) && !self.ended {
                return Ok(None);
            }
            if available.starts_with(BOM) {
                self.pos += BOM.len();
                self.scanned = self.pos;
            }
            self.bom_checked = true;
        }
        loop {
            if self.skip_lf && self.pos < self.buf.len() {
                if self.buf[self.pos] == b'\n' {
                    self.pos += 1;
                }
                self.skip_lf = false;
            }
            let from = self.scanned.max(self.pos);
            let line_end = self.buf[from..].iter().position(|&b| b == b'\n' || b == b'\r');
            let (start, end) = match line_end {
                Some(offset) => {
                    let end = from + offset;
                    self.skip_lf = self.buf[end] == b'\r';
                    let start = self.pos;
                    self.pos = end + 1;
                    self.scanned = self.pos;
                    (start, end)
                }
                None if self.ended => {
                    // The last line, unterminated, then the event's missing blank line.
                    if self.pos < self.buf.len() {
                        let start = self.pos;
                        self.pos = self.buf.len();
                        self.scanned = self.pos;
                        let line = std::mem::take(&mut self.buf);
                        let result = self.line(&line[start..]);
                        self.buf = line;
                        result?;
                    }
                    return Ok(self.dispatch());
                }
                None => {
                    self.scanned = self.buf.len();
                    if self.buf.len() - self.pos + self.data.len() > self.limit {
                        return Err(SseError::EventTooLarge { limit: self.limit });
                    }
                    return Ok(None);
                }
            };
            if start == end {
                if let Some(event) = self.dispatch() {
                    return Ok(Some(event));
                }
                continue;
            }
            let buf = std::mem::take(&mut self.buf);
            let result = self.line(&buf[start..end]);
            self.buf = buf;
            result?;
        }
    }

    /// One non-blank line.
    fn line(&mut self, line: &[u8]) -> Result<(), SseError> {
        if line.first() == Some(&b':') {
            return Ok(());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => {
                if self.data.len() + value.len() + 1 > self.limit {
                    return Err(SseError::EventTooLarge { limit: self.limit });
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.data.push('\n');
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            b"id" if !value.contains(&0) => self.id = Some(String::from_utf8_lossy(value).into_owned()),
            // `retry:` and unknown fields mean nothing here.
            _ => {}
        }
        Ok(())
    }

    /// The event collected so far, if it has data; the event name is reset either way.
    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        if self.data.is_empty() {
            return None;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        Some(SseEvent { event, data, id: self.id.clone() })
    }
}

/// Whether a vendor's stream goes on after an event.
pub(crate) enum Flow {
    Continue,
    /// The vendor's terminal event: the answer is complete.
    Done,
}

/// A vendor's SSE dialect: its events become [`StreamEvent`]s.
pub(crate) trait EventMapper: Send + 'static {
    /// Maps one SSE event, appending what it yields to `out`.
    fn event(&mut self, event: SseEvent, out: &mut VecDeque<StreamEvent>) -> Result<Flow, Error>;

    /// The error for a body that ended without the terminal event, when the answer was not
    /// [`whole`](Self::whole) either.
    fn cut_short(&self) -> Error;

    /// The error for a body that cannot be framed.
    fn framing_error(&self, error: SseError) -> Error;

    /// The stream is about to end with an error (the vendor's error event, a broken or
    /// unframable body, an end without the terminal event): the events the caller should
    /// have before it, such as the usage the vendor reported so far. None by default.
    fn before_failure(&mut self, _out: &mut VecDeque<StreamEvent>) {}

    /// Whether the vendor had already said how the answer ends (its stop reason) when the
    /// stream failed or ended early: then the answer is whole, only the stream's last
    /// frames are missing, and this puts its last events (usage, stop) in `out`. A layer
    /// that resumes answers would otherwise continue one that was complete. No by default.
    fn whole(&mut self, _out: &mut VecDeque<StreamEvent>) -> bool {
        false
    }
}

/// What [`Mapping::step`] has for the caller.
pub(crate) enum Step {
    Item(Result<StreamEvent, Error>),
    /// Feed more bytes (or say the body ended).
    NeedInput,
    Finished,
}

enum State {
    Running,
    Failing(Error),
    /// The mapper's last events go out, then the error.
    Failed(Error),
    Finished,
}

/// An SSE body (fed as it is read) through a vendor's mapper: the stream's items, one step
/// at a time, ending after the vendor's terminal event or the first error.
pub(crate) struct Mapping<M> {
    decoder: SseDecoder,
    mapper: M,
    queue: VecDeque<StreamEvent>,
    state: State,
    input_ended: bool,
}

impl<M: EventMapper> Mapping<M> {
    /// `limit` bounds one event (see [`SseDecoder::new`]).
    pub fn new(mapper: M, limit: usize) -> Self {
        Mapping {
            decoder: SseDecoder::new(limit),
            mapper,
            queue: VecDeque::new(),
            state: State::Running,
            input_ended: false,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.decoder.push(bytes);
    }

    pub fn end_of_input(&mut self) {
        self.decoder.end();
        self.input_ended = true;
    }

    /// Reading the body failed: the stream ends with `error` (after what was already
    /// mapped).
    pub fn fail(&mut self, error: Error) {
        if matches!(self.state, State::Running) {
            self.state = State::Failing(error);
        }
    }

    pub fn step(&mut self) -> Step {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Step::Item(Ok(event));
            }
            match std::mem::replace(&mut self.state, State::Finished) {
                State::Finished => return Step::Finished,
                State::Failing(error) => {
                    if self.mapper.whole(&mut self.queue) {
                        tracing::warn!(
                            "a stream broke after its stop reason, so the answer is whole: {error}"
                        );
                        continue;
                    }
                    self.mapper.before_failure(&mut self.queue);
                    self.state = State::Failed(error);
                    continue;
                }
                State::Failed(error) => return Step::Item(Err(error)),
                State::Running => self.state = State::Running,
            }
            match self.decoder.next_event() {
                Err(error) => self.state = State::Failing(self.mapper.framing_error(error)),
                Ok(Some(event)) => match self.mapper.event(event, &mut self.queue) {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Done) => self.state = State::Finished,
                    Err(error) => self.state = State::Failing(error),
                },
                // A body that ends after the stop reason lacks only its terminal frame,
                // which some compatible servers never send: no warning for that.
                Ok(None) if self.input_ended => {
                    self.state = if self.mapper.whole(&mut self.queue) {
                        State::Finished
                    } else {
                        State::Failing(self.mapper.cut_short())
                    }
                }
                Ok(None) => return Step::NeedInput,
            }
        }
    }

    /// Every item of a body held in memory, read in `chunks`.
    pub fn replay<'a>(
        mut self,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Vec<Result<StreamEvent, Error>> {
        let mut chunks = chunks.into_iter();
        let mut items = Vec::new();
        loop {
            match self.step() {
                Step::Item(item) => items.push(item),
                Step::Finished => return items,
                Step::NeedInput => match chunks.next() {
                    Some(chunk) => self.feed(chunk),
                    None => self.end_of_input(),
                },
            }
        }
    }
}

/// The stream of a live answer: reads `body` only as the consumer asks for events, so a
/// slow consumer holds the vendor back instead of filling memory, and dropping the stream
/// drops the connection.
pub(crate) fn live<M: EventMapper>(body: BodyStream, mapping: Mapping<M>) -> EventStream {
    Box::pin(futures_util::stream::unfold((body, mapping), |(mut body, mut mapping)| async move {
        loop {
            match mapping.step() {
                Step::Item(item) => return Some((item, (body, mapping))),
                Step::Finished => return None,
                Step::NeedInput => match body.next_chunk().await {
                    Ok(Some(chunk)) => mapping.feed(&chunk),
                    Ok(None) => mapping.end_of_input(),
                    Err(error) => mapping.fail(error),
                },
            }
        }
    }))
}

#[cfg(test)]
mod tests;
