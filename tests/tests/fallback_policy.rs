//! The fallback module's decisions (`guest-modules/fallback/src/policy.rs`), compiled
//! natively and unit-tested here; `fallback.rs` tests them through the compiled component.

// Only part of the SDK's table reader serves the fallback policy.
#[allow(dead_code)]
#[path = "../../guest-modules/sdk/src/config.rs"]
mod config;
#[path = "../../guest-modules/fallback/src/policy.rs"]
mod policy;
#[path = "../../guest-modules/sdk/src/target.rs"]
mod target;

use policy::{parse_chain, parse_resume, walk, Walk, MAX_CHAIN};

#[test]
fn the_chain_is_read_and_checked() {
    assert_eq!(parse_chain("{}").unwrap(), Vec::<String>::new());
    assert_eq!(parse_chain(r#"{"chain": null}"#).unwrap(), Vec::<String>::new());
    assert_eq!(
        parse_chain(r#"{"chain": ["openai", "groq/llama-3.3-70b-versatile"]}"#).unwrap(),
        ["openai", "groq/llama-3.3-70b-versatile"]
    );
    let too_long = serde_json::json!({"chain": vec!["openai"; MAX_CHAIN + 1]}).to_string();
    for (json, phrase) in [
        (r#"{"chain": ["Open AI"]}"#, "chain entry `Open AI` is not a valid provider target"),
        (r#"{"chain": ["openai/"]}"#, "not a valid provider target"),
        (r#"{"chain": [1]}"#, "chain must be a list of provider names"),
        (r#"{"chain": "openai"}"#, "chain must be a list of provider names"),
        (r#"{"chains": []}"#, "unknown key `chains`"),
        (too_long.as_str(), "at most 10 are allowed"),
    ] {
        let error = parse_chain(json).expect_err(json);
        assert!(error.contains(phrase), "{json}: {error}");
    }
}

#[test]
fn resume_is_opt_in_and_must_be_a_boolean() {
    assert!(!parse_resume("{}").unwrap());
    assert!(!parse_resume(r#"{"resume": null}"#).unwrap());
    assert!(parse_resume(r#"{"chain": ["openai"], "resume": true}"#).unwrap());
    assert_eq!(parse_chain(r#"{"chain": ["openai"], "resume": true}"#).unwrap(), ["openai"]);
    let error = parse_resume(r#"{"resume": "yes"}"#).expect_err("a string is not a boolean");
    assert!(error.contains("resume must be true or false"), "{error}");
    let error = parse_chain(r#"{"resumes": true}"#).expect_err("unknown key");
    assert!(error.contains("unknown key `resumes`") && error.contains("resume"), "{error}");
}

fn chain(targets: &[&str]) -> Vec<String> {
    targets.iter().map(|t| t.to_string()).collect()
}

#[test]
fn the_walk_stops_at_the_first_answer_and_says_why_it_moves_on() {
    let mut said = Vec::new();
    let mut called = Vec::new();
    let walked = walk(
        &chain(&["a", "b", "c"]),
        &"primary failed",
        |why: &&str, next| said.push(format!("{why} -> {next}")),
        |target| {
            called.push(target.to_string());
            if target == "b" {
                Ok("answer from b")
            } else {
                Err("a failed")
            }
        },
    );
    assert_eq!(walked, Walk::Answered { target: 1, response: "answer from b" });
    assert_eq!(called, ["a", "b"]);
    assert_eq!(said, ["primary failed -> a", "a failed -> b"]);
}

#[test]
fn when_every_target_fails_the_failures_come_back_in_order() {
    let walked: Walk<(), String> =
        walk(&chain(&["a", "b"]), &"p".to_string(), |_, _| {}, |target| Err(format!("{target} down")));
    assert_eq!(walked, Walk::Exhausted { failures: vec!["a down".to_string(), "b down".to_string()] });
    let empty: Walk<(), String> =
        walk(&[], &"p".to_string(), |_, _| panic!("no target"), |_| panic!("no call"));
    assert_eq!(empty, Walk::Exhausted { failures: vec![] });
}
