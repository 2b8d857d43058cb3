//! Both adapters against the fake provider's real wire formats: answers, tool calls,
//! thinking, stop reasons, every error class, cut and stalled streams.

use std::time::{Duration, Instant};

use openma_core::model::{ContentBlock, ModelError, ModelEvent, PermanentKind, StopReason, TransientKind, Usage};
use openma_fake_model::{Block, DEFAULT_SIGNATURE, FakeModel, Reply, ScriptUsage};
use serde_json::json;

use crate::support::{API_KEY, Api, client, client_with_idle, request, run, within};

/// Generates one `#[tokio::test]` per API for a scenario written once.
macro_rules! for_both_apis {
    ($($name:ident),* $(,)?) => {
        mod anthropic {
            $(#[tokio::test] async fn $name() { super::$name(crate::support::Api::Anthropic).await })*
        }
        mod openai {
            $(#[tokio::test] async fn $name() { super::$name(crate::support::Api::OpenAi).await })*
        }
    };
}

for_both_apis!(
    text_answer,
    tool_use_with_fragmented_input,
    thinking_and_text,
    stop_reasons,
    rate_limited_with_retry_after,
    server_error,
    overloaded_status,
    overloaded_inside_the_stream,
    authentication,
    model_not_found_and_invalid_request,
    api_key_never_in_errors,
    cut_stream,
    cut_before_any_content,
    stalled_stream_hits_the_idle_timeout,
    connection_refused,
    request_shape,
);

fn kind(err: &ModelError) -> Result<TransientKind, PermanentKind> {
    match err {
        ModelError::Transient { kind, .. } => Ok(*kind),
        ModelError::Permanent { kind, .. } => Err(*kind),
    }
}

async fn text_answer(api: Api) {
    let fake = within(FakeModel::start()).await;
    let text = "The quick brown fox jumps over the lazy dog.";
    let usage = ScriptUsage {
        input_tokens: 100,
        output_tokens: 20,
        cache_read_input_tokens: 30,
        cache_creation_input_tokens: 0,
    };
    fake.script(vec![Reply::text(text).usage(usage)]);
    let outcome = run(&*client(api, &fake), request("m")).await;
    assert!(outcome.delta_count() > 3, "the text arrives as several deltas");
    assert_eq!(outcome.text_deltas(0), text);
    assert_eq!(outcome.blocks(), vec![(0, ContentBlock::Text { text: text.into() })]);
    let (stop, got) = outcome.finished().expect("finished");
    assert_eq!(stop, StopReason::EndTurn);
    assert_eq!(
        got,
        Usage { input_tokens: 100, output_tokens: 20, cache_read_input_tokens: 30, cache_creation_input_tokens: 0 }
    );
    assert_eq!(fake.queued(), 0);
}

async fn tool_use_with_fragmented_input(api: Api) {
    let fake = within(FakeModel::start()).await;
    let input = json!({"location": "Paris, France", "units": "celsius", "days": [1, 2, 3]});
    fake.script(vec![
        Reply::message(vec![
            Block::text("Let me check."),
            Block::tool_use("get_weather", input.clone()).with_id("toolu_abc"),
            Block::tool_use("get_time", json!({})),
        ])
        .split(4),
    ]);
    let outcome = run(&*client(api, &fake), request("m")).await;
    let blocks = outcome.blocks();
    assert_eq!(blocks.len(), 3);
    assert_eq!(blocks[0], (0, ContentBlock::Text { text: "Let me check.".into() }));
    assert_eq!(blocks[1], (1, ContentBlock::ToolUse { id: "toolu_abc".into(), name: "get_weather".into(), input }));
    let (index, ContentBlock::ToolUse { id, name, input }) = &blocks[2] else { panic!("{blocks:?}") };
    assert_eq!((*index, name.as_str(), input), (2, "get_time", &json!({})));
    assert!(!id.is_empty());
    assert_eq!(outcome.finished().unwrap().0, StopReason::ToolUse);
}

async fn thinking_and_text(api: Api) {
    let fake = within(FakeModel::start()).await;
    fake.script(vec![Reply::thinking("First, consider the question carefully.", "Answer: 42")]);
    let outcome = run(&*client(api, &fake), request("m")).await;
    let thinking: String = outcome
        .events
        .iter()
        .filter_map(|e| match e {
            ModelEvent::ThinkingDelta { index: 0, text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(thinking, "First, consider the question carefully.");
    // Only Anthropic signs thinking; OpenAI-compatible reasoning has no signature.
    let signature = (api == Api::Anthropic).then(|| DEFAULT_SIGNATURE.to_owned());
    assert_eq!(
        outcome.blocks(),
        vec![
            (0, ContentBlock::Thinking { thinking: "First, consider the question carefully.".into(), signature }),
            (1, ContentBlock::Text { text: "Answer: 42".into() }),
        ]
    );
}

async fn stop_reasons(api: Api) {
    let fake = within(FakeModel::start()).await;
    let client = client(api, &fake);
    let cases = [
        ("end_turn", StopReason::EndTurn),
        ("max_tokens", StopReason::MaxTokens),
        // OpenAI has one `stop` for both.
        ("stop_sequence", if api == Api::Anthropic { StopReason::StopSequence } else { StopReason::EndTurn }),
        ("tool_use", StopReason::ToolUse),
        ("pause_turn", StopReason::PauseTurn),
        ("refusal", StopReason::Refusal),
        ("brand_new_reason", StopReason::Other("brand_new_reason".into())),
    ];
    for (wire, expected) in cases {
        fake.script(vec![Reply::text("x").stop_reason(wire)]);
        let outcome = run(&*client, request("m")).await;
        assert_eq!(outcome.finished().map(|f| f.0), Some(expected), "{wire}");
    }
}

async fn rate_limited_with_retry_after(api: Api) {
    let fake = within(FakeModel::start()).await;
    fake.script(vec![Reply::error(429).error_message("Number of requests exceeded").retry_after(7)]);
    let err = run(&*client(api, &fake), request("m")).await.err();
    assert_eq!(kind(&err), Ok(TransientKind::RateLimited));
    let ModelError::Transient { retry_after, message, .. } = &err else { unreachable!() };
    assert_eq!(*retry_after, Some(Duration::from_secs(7)));
    assert!(message.contains("Number of requests exceeded") && message.contains("429"), "{message}");
}

async fn server_error(api: Api) {
    let fake = within(FakeModel::start()).await;
    fake.script(vec![Reply::error(500).error_message("Internal failure")]);
    let err = run(&*client(api, &fake), request("m")).await.err();
    assert_eq!(kind(&err), Ok(TransientKind::ServerError));
    assert!(err.to_string().contains("Internal failure"));
}

async fn overloaded_status(api: Api) {
    let fake = within(FakeModel::start()).await;
    fake.script(vec![Reply::error(529)]);
    let err = run(&*client(api, &fake), request("m")).await.err();
    assert_eq!(kind(&err), Ok(TransientKind::Overloaded));
}

async fn overloaded_inside_the_stream(api: Api) {
    let fake = within(FakeModel::start()).await;
    fake.script(vec![
        Reply::stream_error("overloaded_error").error_message("Overloaded").blocks(vec![Block::text("partial")]),
    ]);
    let outcome = run(&*client(api, &fake), request("m")).await;
    assert_eq!(outcome.text_deltas(0), "partial");
    let err = outcome.err();
    assert_eq!(kind(&err), Ok(TransientKind::Overloaded));
    assert!(err.to_string().contains("Overloaded"));
}

async fn authentication(api: Api) {
    let fake = within(FakeModel::start()).await;
    fake.script(vec![Reply::error(401).error_message("invalid x-api-key"), Reply::error(403)]);
    let client = client(api, &fake);
    let err = run(&*client, request("m")).await.err();
    assert_eq!(kind(&err), Err(PermanentKind::Authentication));
    assert!(err.to_string().contains("invalid x-api-key"));
    let err = run(&*client, request("m")).await.err();
    assert_eq!(kind(&err), Err(PermanentKind::Authentication));
}

async fn model_not_found_and_invalid_request(api: Api) {
    let fake = within(FakeModel::start()).await;
    fake.script(vec![Reply::error(404), Reply::error(400).error_message("messages: empty"), Reply::error(413)]);
    let client = client(api, &fake);
    assert_eq!(kind(&run(&*client, request("m")).await.err()), Err(PermanentKind::ModelNotFound));
    let err = run(&*client, request("m")).await.err();
    assert_eq!(kind(&err), Err(PermanentKind::InvalidRequest));
    assert!(err.to_string().contains("messages: empty"));
    assert_eq!(kind(&run(&*client, request("m")).await.err()), Err(PermanentKind::InvalidRequest));
}

async fn api_key_never_in_errors(api: Api) {
    let fake = within(FakeModel::start()).await;
    fake.script(vec![Reply::error(401).error_message(format!("Incorrect API key provided: {API_KEY}"))]);
    let err = run(&*client(api, &fake), request("m")).await.err();
    assert!(!err.to_string().contains(API_KEY), "{err}");
    assert!(!format!("{err:?}").contains(API_KEY));
    assert!(err.to_string().contains("[redacted]"));
}

async fn cut_stream(api: Api) {
    let fake = within(FakeModel::start()).await;
    fake.script(vec![Reply::cut_after(20)]);
    let outcome = run(&*client(api, &fake), request("m")).await;
    let seen = outcome.text_deltas(0);
    assert!(seen.len() >= 20 && seen.len() < 40, "deltas before the cut: {seen:?}");
    assert!(outcome.blocks().is_empty() && outcome.finished().is_none());
    let err = outcome.err();
    assert_eq!(kind(&err), Ok(TransientKind::StreamCut), "{err}");
}

async fn cut_before_any_content(api: Api) {
    let fake = within(FakeModel::start()).await;
    fake.script(vec![Reply::cut_after(0).blocks(vec![Block::tool_use("t", json!({"a": "b"}))])]);
    let outcome = run(&*client(api, &fake), request("m")).await;
    assert!(outcome.blocks().is_empty());
    assert_eq!(kind(&outcome.err()), Ok(TransientKind::StreamCut));
}

async fn stalled_stream_hits_the_idle_timeout(api: Api) {
    let fake = within(FakeModel::start()).await;
    fake.script(vec![Reply::text("slow").delay_ms(3_000)]);
    let client = client_with_idle(api, &fake, Duration::from_millis(300));
    let started = Instant::now();
    let err = run(&*client, request("m")).await.err();
    assert_eq!(kind(&err), Ok(TransientKind::Network), "{err}");
    assert!(started.elapsed() < Duration::from_millis(2_500), "gave up after the idle timeout, not the delay");
}

async fn connection_refused(api: Api) {
    // Nothing listens on a port once its listener is gone.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let http = openma_models::http_client().unwrap();
    let dead: Box<dyn openma_core::model::ModelClient> = match api {
        Api::Anthropic => Box::new(openma_models::AnthropicClient::new(format!("http://{addr}"), API_KEY, http)),
        Api::OpenAi => Box::new(openma_models::OpenAiClient::new(format!("http://{addr}"), API_KEY, http)),
    };
    let err = run(&*dead, request("m")).await.err();
    assert_eq!(kind(&err), Ok(TransientKind::Network), "{err}");
}

async fn request_shape(api: Api) {
    let fake = within(FakeModel::start()).await;
    run(&*client(api, &fake), request("some-model")).await.ok();
    let captured = fake.requests();
    assert_eq!(captured.len(), 1);
    let req = &captured[0];
    assert_eq!(req.path, api.path());
    assert_eq!(req.header("content-type"), Some("application/json"));
    let body = &req.body;
    assert_eq!(body["model"], json!("some-model"));
    assert_eq!(body["stream"], json!(true));
    assert_eq!(body["max_tokens"], json!(1024));
    let key_sha = openma_fake_model::sha256_hex(API_KEY);
    match api {
        Api::Anthropic => {
            assert_eq!(req.credentials.get("x-api-key"), Some(&key_sha));
            assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
            assert_eq!(body["system"], json!("You are terse."));
            assert_eq!(body["messages"], json!([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]));
            assert_eq!(body["tools"][0]["name"], json!("get_weather"));
            assert!(body["tools"][0]["input_schema"].is_object());
        }
        Api::OpenAi => {
            assert_eq!(req.credentials.get("authorization"), Some(&key_sha));
            assert_eq!(body["stream_options"], json!({"include_usage": true}));
            assert_eq!(
                body["messages"],
                json!([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}])
            );
            assert_eq!(body["tools"][0]["type"], json!("function"));
            assert_eq!(body["tools"][0]["function"]["name"], json!("get_weather"));
        }
    }
    assert!(!serde_json::to_string(&captured).unwrap().contains(API_KEY));
}

#[tokio::test]
async fn anthropic_cache_breakpoints() {
    let fake = within(FakeModel::start()).await;
    let mut req = request("claude-x");
    req.cache = true;
    req.messages.push(openma_core::model::Message {
        role: openma_core::model::Role::Assistant,
        content: vec![ContentBlock::Text { text: "Hello".into() }],
    });
    req.messages.push(openma_core::model::Message {
        role: openma_core::model::Role::User,
        content: vec![ContentBlock::Text { text: "first".into() }, ContentBlock::Text { text: "last".into() }],
    });
    run(&*client(Api::Anthropic, &fake), req).await.ok();
    let body = &fake.requests()[0].body;
    let ephemeral = json!({"type": "ephemeral"});
    assert_eq!(body["system"], json!([{"type": "text", "text": "You are terse.", "cache_control": ephemeral}]));
    assert_eq!(body["tools"][0]["cache_control"], ephemeral);
    assert_eq!(body["messages"][2]["content"][1]["cache_control"], ephemeral);
    assert!(body["messages"][2]["content"][0].get("cache_control").is_none());
    assert!(body["messages"][0]["content"][0].get("cache_control").is_none());
    assert_eq!(body.to_string().matches("cache_control").count(), 3, "exactly three breakpoints");
}

#[tokio::test]
async fn openai_tool_round_trip_is_translated() {
    use openma_core::model::{Message, Role};
    let fake = within(FakeModel::start()).await;
    let mut req = request("gpt-x");
    req.messages.push(Message {
        role: Role::Assistant,
        content: vec![
            ContentBlock::Thinking { thinking: "private".into(), signature: Some("sig".into()) },
            ContentBlock::ToolUse {
                id: "call_1".into(),
                name: "get_weather".into(),
                input: json!({"location": "Oslo"}),
            },
        ],
    });
    req.messages.push(Message {
        role: Role::User,
        content: vec![ContentBlock::ToolResult {
            tool_use_id: "call_1".into(),
            content: vec![ContentBlock::Text { text: "-3C".into() }],
            is_error: false,
        }],
    });
    run(&*client(Api::OpenAi, &fake), req).await.ok();
    let messages = &fake.requests()[0].body["messages"];
    assert_eq!(
        messages[2],
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Oslo\"}"}}
        ]})
    );
    assert_eq!(messages[3], json!({"role": "tool", "tool_call_id": "call_1", "content": "-3C"}));
    assert!(!messages.to_string().contains("private"), "thinking is dropped");
}

/// With the `tls` feature an HTTPS endpoint is reached like any other (here: nothing
/// listens, so a network error); without it the error says which feature is missing.
#[tokio::test]
async fn https_endpoints_and_the_tls_feature() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let http = openma_models::http_client().unwrap();
    let client = openma_models::AnthropicClient::new(format!("https://{addr}"), API_KEY, http);
    let err = run(&client, request("m")).await.err();
    if cfg!(feature = "tls") {
        assert_eq!(kind(&err), Ok(TransientKind::Network), "{err}");
    } else {
        assert_eq!(kind(&err), Err(PermanentKind::NotConfigured), "{err}");
        assert!(err.to_string().contains("`tls` feature"), "{err}");
    }
}
