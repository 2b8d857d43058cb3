//! The router sends each model id to the right endpoint of the fake, with the prefix
//! stripped, and refuses ids whose provider is not configured.

use openma_core::model::{ModelClient, ModelError, PermanentKind};
use openma_fake_model::{FakeModel, Reply};
use openma_models::{ModelRouter, http_client};
use serde_json::json;

use crate::support::{API_KEY, request, run, within};

fn router(fake: &FakeModel, anthropic: bool, openai: bool) -> ModelRouter {
    let base = fake.base_url();
    ModelRouter::from_lookup(
        |name| match name {
            "ANTHROPIC_API_KEY" if anthropic => Some(API_KEY.to_owned()),
            "OPENAI_API_KEY" if openai => Some(API_KEY.to_owned()),
            "ANTHROPIC_BASE_URL" | "OPENAI_BASE_URL" => Some(base.clone()),
            _ => None,
        },
        http_client().unwrap(),
    )
}

async fn path_and_model(fake: &FakeModel, router: &ModelRouter, model: &str) -> (String, serde_json::Value) {
    fake.reset();
    fake.script(vec![Reply::text("routed")]);
    let outcome = run(router, request(model)).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let captured = fake.requests();
    assert_eq!(captured.len(), 1);
    (captured[0].path.clone(), captured[0].body["model"].clone())
}

#[tokio::test]
async fn routes_by_model_id() {
    let fake = within(FakeModel::start()).await;
    let both = router(&fake, true, true);
    for (model, path, sent) in [
        ("claude-sonnet-4-5", "/v1/messages", "claude-sonnet-4-5"),
        ("anthropic/claude-x", "/v1/messages", "claude-x"),
        ("openai/gpt-4o", "/v1/chat/completions", "gpt-4o"),
        ("openai:gpt-4o-mini", "/v1/chat/completions", "gpt-4o-mini"),
        ("llama3.1:8b", "/v1/chat/completions", "llama3.1:8b"),
    ] {
        assert_eq!(path_and_model(&fake, &both, model).await, (path.to_owned(), json!(sent)), "{model}");
    }
    // Without OpenAI, a bare id goes to Anthropic.
    let anthropic_only = router(&fake, true, false);
    assert_eq!(
        path_and_model(&fake, &anthropic_only, "some-model").await,
        ("/v1/messages".to_owned(), json!("some-model"))
    );
}

#[tokio::test]
async fn unconfigured_provider_is_refused_without_a_request() {
    let fake = within(FakeModel::start()).await;
    let anthropic_only = router(&fake, true, false);
    let err = match anthropic_only.stream(request("openai/gpt-4o")).await {
        Err(err) => err,
        Ok(_) => panic!("expected NotConfigured"),
    };
    assert!(matches!(err, ModelError::Permanent { kind: PermanentKind::NotConfigured, .. }));
    assert!(err.to_string().contains("OPENAI_API_KEY"), "{err}");
    let nothing = router(&fake, false, false);
    let err = match nothing.stream(request("claude-x")).await {
        Err(err) => err,
        Ok(_) => panic!("expected NotConfigured"),
    };
    assert!(err.to_string().contains("ANTHROPIC_API_KEY"), "{err}");
    assert!(fake.requests().is_empty());
}
