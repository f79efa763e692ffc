//! The fallback module's decisions, as plain Rust: which targets its table names, and how
//! a failed call walks them. Nothing here touches the WIT bindings, so the host's test suite
//! compiles this file natively and unit-tests it (`tests/tests/fallback_policy.rs`).

use crate::config::Config;
use crate::target;

/// At most this many chain entries: a longer chain is a configuration mistake.
pub const MAX_CHAIN: usize = 10;

/// The keys of the module's table.
pub const KEYS: [&str; 2] = ["chain", "resume"];

/// Reads the module's `resume` (default: false): streaming calls that fail after their
/// commit point are continued on the next target of the chain.
pub fn parse_resume(text: &str) -> Result<bool, String> {
    Config::parse(text)?.bool("resume", false)
}

/// Reads the module's table: `chain`, a list of provider targets (default: none).
pub fn parse_chain(text: &str) -> Result<Vec<String>, String> {
    let config = Config::parse(text)?;
    config.deny_unknown(&KEYS)?;
    let chain =
        config.list("chain", |v| v.as_str().map(str::to_owned), "provider names")?.unwrap_or_default();
    if chain.len() > MAX_CHAIN {
        return Err(format!("chain has {} entries; at most {MAX_CHAIN} are allowed", chain.len()));
    }
    if let Some(bad) = chain.iter().find(|e| !target::valid(e)) {
        return Err(format!(
            "chain entry `{bad}` is not a valid provider target: expected {}",
            target::EXPECTED
        ));
    }
    Ok(chain)
}

/// How a failed call ended after walking the chain.
#[derive(Debug, PartialEq)]
pub enum Walk<R, E> {
    /// `target` answered.
    Answered { target: usize, response: R },
    /// Every target failed (in chain order); the caller returns the primary error.
    Exhausted { failures: Vec<E> },
}

/// Tries each target in order after the primary failed, calling `before` with the error
/// that sends the walk on (the primary's, then each failure's) and the next target, and
/// `call` for each target; stops at the first answer.
pub fn walk<R, E>(
    chain: &[String],
    primary: &E,
    mut before: impl FnMut(&E, &str),
    mut call: impl FnMut(&str) -> Result<R, E>,
) -> Walk<R, E> {
    let mut failures: Vec<E> = Vec::new();
    for (index, target) in chain.iter().enumerate() {
        before(failures.last().unwrap_or(primary), target);
        match call(target) {
            Ok(response) => return Walk::Answered { target: index, response },
            Err(error) => failures.push(error),
        }
    }
    Walk::Exhausted { failures }
}
