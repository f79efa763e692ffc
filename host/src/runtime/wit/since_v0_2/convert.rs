//! Values of contract 0.2 to and from the host's data model (the newest version's).
//!
//! The two data models are the same but for the stop reason: 0.3 adds `pause-turn`,
//! `refusal` and `context-window-exceeded`. A 0.2 module is handed the nearest reason it
//! knows, the one hosts speaking only 0.2 reported: `end-turn`, `content-filter` and
//! `max-tokens`. What such a module returns is lifted as it is, so a 0.2 layer turns those
//! three reasons into their 0.2 neighbours for every layer outside it.
//!
//! Conversions move strings and lists instead of copying them.

use super::arc::llm::{logging as old_logging, types as old};
use crate::runtime::wit::latest::arc::llm::logging as new_logging;
use crate::types as new;

/// A field-by-field conversion between the two versions' types.
trait Conv<T> {
    fn conv(self) -> T;
}

macro_rules! same {
    ($($t:ty),*) => {$(
        impl Conv<$t> for $t {
            fn conv(self) -> $t {
                self
            }
        }
    )*};
}
same!(String, u16, u32, u64, bool, f64);

impl<A: Conv<B>, B> Conv<Option<B>> for Option<A> {
    fn conv(self) -> Option<B> {
        self.map(Conv::conv)
    }
}

impl<A: Conv<B>, B> Conv<Vec<B>> for Vec<A> {
    fn conv(self) -> Vec<B> {
        self.into_iter().map(Conv::conv).collect()
    }
}

impl Conv<(String, String)> for (String, String) {
    fn conv(self) -> (String, String) {
        self
    }
}

/// Both directions for a record of the same fields in both versions.
macro_rules! record {
    ($name:ident { $($field:ident),* }) => {
        impl Conv<new::$name> for old::$name {
            fn conv(self) -> new::$name {
                new::$name { $($field: self.$field.conv()),* }
            }
        }
        impl Conv<old::$name> for new::$name {
            fn conv(self) -> old::$name {
                old::$name { $($field: self.$field.conv()),* }
            }
        }
    };
}

/// Both directions for a variant whose cases each carry one value.
macro_rules! variant {
    ($name:ident ( $($case:ident),* )) => {
        impl Conv<new::$name> for old::$name {
            fn conv(self) -> new::$name {
                match self {
                    $(old::$name::$case(value) => new::$name::$case(value.conv()),)*
                }
            }
        }
        impl Conv<old::$name> for new::$name {
            fn conv(self) -> old::$name {
                match self {
                    $(new::$name::$case(value) => old::$name::$case(value.conv()),)*
                }
            }
        }
    };
}

/// One direction for an enum whose cases are the same in both versions.
macro_rules! enumeration {
    ($old:ident :: $name:ident => $new:ident [ $($case:ident),* ]) => {
        impl Conv<$new::$name> for $old::$name {
            fn conv(self) -> $new::$name {
                match self {
                    $($old::$name::$case => $new::$name::$case,)*
                }
            }
        }
    };
}

record!(Image { media_type, data });
record!(ToolUse { id, name, arguments });
record!(ToolResult { tool_use_id, content, is_error });
variant!(ContentBlock(Text, Image, ToolUse, ToolResult));
variant!(Content(Text, Blocks));
record!(Message { role, content });
record!(ToolDefinition { name, description, parameters });
record!(Options { max_tokens, temperature, stop_sequences, extra });
record!(Request { messages, tools, options });
record!(Usage {
    input_tokens,
    output_tokens,
    total_tokens,
    cache_read_tokens,
    cache_write_tokens,
    reasoning_tokens
});
record!(ToolCall { id, name, arguments });
record!(Response { content, tool_calls, usage, model, stop_reason, thinking, metadata });
record!(Error { kind, status, retry_after_ms, should_retry, provider, message, body });
enumeration!(old::Role => new [System, User, Assistant, Tool]);
enumeration!(new::Role => old [System, User, Assistant, Tool]);
enumeration!(old::ErrorKind => new [Api, Connection, Timeout, Config, Parse, Module]);
enumeration!(new::ErrorKind => old [Api, Connection, Timeout, Config, Parse, Module]);
enumeration!(old::StopReason => new [EndTurn, ToolUse, MaxTokens, StopSequence, ContentFilter]);
enumeration!(old_logging::Level => new_logging [Trace, Debug, Info, Warn, Error]);

/// The reasons 0.3 added become the 0.2 reason that hosts speaking only 0.2 reported for
/// the same vendor answer.
impl Conv<old::StopReason> for new::StopReason {
    fn conv(self) -> old::StopReason {
        match self {
            new::StopReason::EndTurn | new::StopReason::PauseTurn => old::StopReason::EndTurn,
            new::StopReason::ToolUse => old::StopReason::ToolUse,
            new::StopReason::MaxTokens | new::StopReason::ContextWindowExceeded => old::StopReason::MaxTokens,
            new::StopReason::StopSequence => old::StopReason::StopSequence,
            new::StopReason::ContentFilter | new::StopReason::Refusal => old::StopReason::ContentFilter,
        }
    }
}

macro_rules! from {
    ($($name:ident),*) => {$(
        impl From<old::$name> for new::$name {
            fn from(value: old::$name) -> Self {
                value.conv()
            }
        }
        impl From<new::$name> for old::$name {
            fn from(value: new::$name) -> Self {
                value.conv()
            }
        }
    )*};
}
from!(Request, Response, Error, StopReason);

impl From<old_logging::Level> for new_logging::Level {
    fn from(level: old_logging::Level) -> Self {
        level.conv()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reasons_0_2_lacks_become_their_neighbours_and_the_rest_round_trip() {
        let lowered = |reason: new::StopReason| old::StopReason::from(reason);
        assert_eq!(lowered(new::StopReason::PauseTurn), old::StopReason::EndTurn);
        assert_eq!(lowered(new::StopReason::Refusal), old::StopReason::ContentFilter);
        assert_eq!(lowered(new::StopReason::ContextWindowExceeded), old::StopReason::MaxTokens);
        for reason in [
            new::StopReason::EndTurn,
            new::StopReason::ToolUse,
            new::StopReason::MaxTokens,
            new::StopReason::StopSequence,
            new::StopReason::ContentFilter,
        ] {
            assert_eq!(new::StopReason::from(lowered(reason)), reason);
        }
    }
}
