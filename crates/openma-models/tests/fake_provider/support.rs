//! Shared test helpers: the clients under test pointed at a [`FakeModel`], a request
//! builder, and collecting a stream under a deadline.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use openma_core::model::{
    ContentBlock, Message, ModelClient, ModelError, ModelEvent, ModelRequest, Role, StopReason, ToolSpec, Usage,
};
use openma_fake_model::FakeModel;
use openma_models::{AnthropicClient, OpenAiClient, http_client};
use serde_json::json;

/// Every test finishes well within this, or fails.
pub const DEADLINE: Duration = Duration::from_secs(15);

pub const API_KEY: &str = "sk-test-key-0123456789";

pub async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(DEADLINE, future).await.expect("the test finished before its deadline")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Anthropic,
    OpenAi,
}

impl Api {
    pub fn path(self) -> &'static str {
        match self {
            Api::Anthropic => "/v1/messages",
            Api::OpenAi => "/v1/chat/completions",
        }
    }
}

pub fn client(api: Api, fake: &FakeModel) -> Box<dyn ModelClient> {
    client_with_idle(api, fake, openma_models::DEFAULT_IDLE_TIMEOUT)
}

pub fn client_with_idle(api: Api, fake: &FakeModel, idle: Duration) -> Box<dyn ModelClient> {
    let http = http_client().expect("http client");
    match api {
        Api::Anthropic => Box::new(AnthropicClient::new(fake.base_url(), API_KEY, http).with_idle_timeout(idle)),
        // A base URL with `/v1`, as OpenAI-compatible servers are usually configured.
        Api::OpenAi => {
            Box::new(OpenAiClient::new(format!("{}/v1", fake.base_url()), API_KEY, http).with_idle_timeout(idle))
        }
    }
}

pub fn request(model: &str) -> ModelRequest {
    ModelRequest {
        model: model.to_owned(),
        system: Some("You are terse.".to_owned()),
        messages: vec![Message { role: Role::User, content: vec![ContentBlock::Text { text: "Hi".to_owned() }] }],
        tools: vec![ToolSpec {
            name: "get_weather".to_owned(),
            description: "Weather for a place".to_owned(),
            input_schema: json!({"type": "object", "properties": {"location": {"type": "string"}}}),
        }],
        max_tokens: 1024,
        cache: false,
    }
}

/// What one call produced: the events until the end, and the error that ended it, if any.
#[derive(Debug)]
pub struct Outcome {
    pub events: Vec<ModelEvent>,
    pub error: Option<ModelError>,
}

impl Outcome {
    pub fn ok(self) -> Vec<ModelEvent> {
        assert!(self.error.is_none(), "unexpected error {:?} after {:?}", self.error, self.events);
        self.events
    }

    pub fn err(self) -> ModelError {
        self.error.unwrap_or_else(|| panic!("expected an error, got {:?}", self.events))
    }

    /// The concatenated text deltas of block `index`.
    pub fn text_deltas(&self, index: u32) -> String {
        self.events
            .iter()
            .filter_map(|e| match e {
                ModelEvent::TextDelta { index: i, text } if *i == index => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn delta_count(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, ModelEvent::TextDelta { .. } | ModelEvent::ThinkingDelta { .. }))
            .count()
    }

    pub fn blocks(&self) -> Vec<(u32, ContentBlock)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ModelEvent::BlockComplete { index, block } => Some((*index, block.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn finished(&self) -> Option<(StopReason, Usage)> {
        match self.events.last() {
            Some(ModelEvent::Finished { stop_reason, usage }) => Some((stop_reason.clone(), *usage)),
            _ => None,
        }
    }
}

/// Run one call to its end. An error from `stream` itself (status known) is an outcome
/// with no events.
pub async fn run(client: &dyn ModelClient, request: ModelRequest) -> Outcome {
    within(async {
        let mut stream = match client.stream(request).await {
            Ok(stream) => stream,
            Err(error) => return Outcome { events: Vec::new(), error: Some(error) },
        };
        let mut events = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => events.push(event),
                Err(error) => {
                    assert!(stream.next().await.is_none(), "an error is the last item of a stream");
                    return Outcome { events, error: Some(error) };
                }
            }
        }
        Outcome { events, error: None }
    })
    .await
}
