//! Conformance with the vendors' own contracts: each adapter's requests are checked by
//! Stoplight Prism serving the vendors' OpenAPI specs as validating mocks
//! (`../shared/tools/prism-mock.sh start`, see `../shared/specs/README.md`).
//!
//! The mocks' base URLs come from `ARCLLM_PRISM_OPENAI` and `ARCLLM_PRISM_ANTHROPIC`
//! (`.ci/run` starts the mocks and sets them). Without them every test here prints why it
//! is skipped and passes; with them, any failure is real. Prism flags a request that breaks
//! the spec with an error status and an `sl-violations` header, which the adapters surface
//! as `adapter.sl-violations` metadata, so a 2xx with violations is caught too.

use arcllm::providers::{ProviderCatalog, ProviderConfig};
use arcllm::types::*;
use arcllm::Provider;
use arcllm_tests::full_request;
use std::io::Write;
use std::sync::Arc;

struct Mocks {
    openai: String,
    anthropic: String,
}

fn mocks(test: &str) -> Option<Mocks> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    match (var("ARCLLM_PRISM_OPENAI"), var("ARCLLM_PRISM_ANTHROPIC")) {
        (Some(openai), Some(anthropic)) => Some(Mocks { openai, anthropic }),
        _ => {
            // Straight to stderr: libtest captures `eprintln!` of passing tests, and a skip
            // must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "conformance skipped ({test}): ARCLLM_PRISM_OPENAI/ARCLLM_PRISM_ANTHROPIC not set (start ../shared/tools/prism-mock.sh and export them; .ci/run does)"
            );
            None
        }
    }
}

/// The built-in provider `name`, pointed at the mock, with `headers` added and `edit`
/// applied: the real shipped settings, against the vendor's contract.
fn builtin_at(
    name: &str,
    base_url: &str,
    headers: &[(&str, &str)],
    edit: impl FnOnce(&mut ProviderConfig),
) -> Arc<dyn Provider> {
    let mut catalog = ProviderCatalog::builtin().expect("built-ins");
    let mut config = catalog.get(name).expect("built-in provider").clone();
    config.provider.base_url = base_url.to_string();
    for (header, value) in headers {
        config.provider.extra_headers.insert(header.to_string(), value.to_string());
    }
    edit(&mut config);
    catalog.insert(config);
    // Prism checks OpenAI's bearer scheme is present, not the key's value.
    catalog.create_with_env(name, None, &|_| Some("sk-conformance-test".into())).expect("create")
}

/// Every field the data model has and the spec accepts, plus a multi-turn history.
fn requests() -> Vec<(&'static str, Request)> {
    let mut plain = Request::new(vec![Message::user("Hello")]);
    plain.options.max_tokens = Some(16);
    let mut multi_turn = Request::new(vec![
        Message::system("Answer in one word."),
        Message::user("Capital of France?"),
        Message::assistant("Paris."),
        Message::user("And of Italy?"),
    ]);
    multi_turn.options.stop_sequences = vec!["\n\n".into(), "END".into()];
    vec![("full", full_request()), ("plain", plain), ("multi-turn", multi_turn)]
}

fn assert_complete(vendor: &str, what: &str, response: &Response) {
    assert_eq!(
        response.metadata_value("adapter.sl-violations"),
        None,
        "{vendor} {what}: the mock found violations"
    );
    assert!(
        response.content.as_deref().is_some_and(|c| !c.is_empty()),
        "{vendor} {what}: no content: {response:?}"
    );
    assert!(!response.model.is_empty(), "{vendor} {what}: no model");
    let usage = &response.usage;
    assert!(usage.input_tokens > 0 && usage.output_tokens > 0, "{vendor} {what}: usage {usage:?}");
    assert_eq!(usage.total_tokens, usage.input_tokens + usage.output_tokens, "{vendor} {what}");
    assert_eq!(response.stop_reason, StopReason::EndTurn, "{vendor} {what}");
}

#[tokio::test]
async fn openai_requests_conform_and_answers_parse() {
    let Some(mocks) = mocks("openai") else { return };
    // The shipped settings (max_completion_tokens, no temperature) and the compatible
    // servers' (max_tokens, a default temperature).
    let shipped = builtin_at("openai", &mocks.openai, &[], |_| {});
    let compatible = builtin_at("groq", &mocks.openai, &[], |_| {});
    for (name, provider) in [("openai", shipped), ("groq", compatible)] {
        for (what, request) in requests() {
            let response =
                provider.invoke(request).await.unwrap_or_else(|e| panic!("{name} {what}: {e}\n{:?}", e.body));
            assert_complete(name, what, &response);
            assert!(
                response.usage.reasoning_tokens.is_some(),
                "{name} {what}: completion_tokens_details is read"
            );
        }
    }
}

#[tokio::test]
async fn anthropic_requests_conform_and_answers_parse() {
    let Some(mocks) = mocks("anthropic") else { return };
    let provider = builtin_at("anthropic", &mocks.anthropic, &[], |_| {});
    for (what, request) in requests() {
        let response =
            provider.invoke(request).await.unwrap_or_else(|e| panic!("anthropic {what}: {e}\n{:?}", e.body));
        assert_complete("anthropic", what, &response);
    }
}

#[tokio::test]
async fn forced_error_statuses_become_api_errors() {
    let Some(mocks) = mocks("forced errors") else { return };
    for status in [429u16, 500, 503, 529] {
        let prefer = format!("code={status}");
        let mut cases =
            vec![("anthropic", builtin_at("anthropic", &mocks.anthropic, &[("Prefer", &prefer)], |_| {}))];
        // OpenAI's spec documents 429, 500 and 503 only.
        if status != 529 {
            cases.push(("openai", builtin_at("openai", &mocks.openai, &[("Prefer", &prefer)], |_| {})));
        }
        for (vendor, provider) in cases {
            let error = provider.invoke(full_request()).await.expect_err("a forced error status");
            assert_eq!(error.kind, ErrorKind::Api, "{vendor} {status}: {error}");
            assert_eq!(error.status, Some(status), "{vendor}: {error}");
            assert_eq!(error.provider, vendor);
            assert!(error.body.is_some(), "{vendor} {status}: the body excerpt is kept");
            if vendor == "openai" {
                // The spec's error responses carry `Retry-After: 1`.
                assert_eq!(error.retry_after_ms, Some(1000), "{vendor} {status}");
            }
        }
    }
}

#[tokio::test]
async fn the_mocks_do_reject_requests_that_break_the_spec() {
    // A control: without it, a mock that accepted anything would make the tests above
    // pass vacuously.
    let Some(mocks) = mocks("control") else { return };
    let mut request = Request::new(vec![Message::user("hi")]);
    request.options.extra = Some(r#"{"thinking": {"type": "enabled", "budget_tokens": 1024}}"#.into());
    let anthropic = builtin_at("anthropic", &mocks.anthropic, &[], |_| {});
    let error = anthropic.invoke(request).await.expect_err("the Anthropic spec has no `thinking`");
    assert_eq!(error.kind, ErrorKind::Api, "{error}");

    let mut request = Request::new(vec![Message::user("hi")]);
    request.options.extra = Some(r#"{"n": 0}"#.into());
    let openai = builtin_at("openai", &mocks.openai, &[], |_| {});
    let error = openai.invoke(request).await.expect_err("`n` must be at least 1");
    assert_eq!((error.kind, error.status), (ErrorKind::Api, Some(422)), "{error}");
}
