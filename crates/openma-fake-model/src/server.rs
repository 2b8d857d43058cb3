//! The HTTP side: the two provider endpoints, request capture, and the `/_fake/*`
//! control API that lets tests in any language script answers and read what was sent.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::frames::{self, Frame};
use crate::script::{CutReply, ErrorReply, MessageReply, Reply};
use crate::{anthropic, openai};

/// Sequential ids for messages and tool calls, so scripted runs are reproducible.
#[derive(Debug, Default)]
pub(crate) struct Ids(AtomicU64);

impl Ids {
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// A request the fake received on a provider endpoint. Credentials are never stored:
/// only a SHA-256 of each, so tests can check which key was sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapturedRequest {
    pub method: String,
    pub path: String,
    /// Lower-case names; `x-api-key` and `authorization` are left out (see `credentials`).
    pub headers: BTreeMap<String, String>,
    /// Header name (`x-api-key`, `authorization`) → hex SHA-256 of the credential. For
    /// `authorization` the `Bearer ` prefix is stripped first, so both providers give
    /// `sha256(api_key)`.
    pub credentials: BTreeMap<String, String>,
    /// The JSON body, or the raw text as a string when it is not JSON.
    pub body: Value,
}

impl CapturedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// Hex SHA-256, as recorded in [`CapturedRequest::credentials`].
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

const CREDENTIAL_HEADERS: [&str; 2] = ["x-api-key", "authorization"];

#[derive(Debug)]
pub(crate) struct Shared {
    queue: Mutex<VecDeque<Reply>>,
    default_reply: Mutex<Reply>,
    initial_default: Reply,
    requests: Mutex<Vec<CapturedRequest>>,
    pub(crate) ids: Ids,
}

/// A poisoned lock only means a test panicked mid-update; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(default_reply: Reply) -> Self {
        Self {
            queue: Mutex::default(),
            default_reply: Mutex::new(default_reply.clone()),
            initial_default: default_reply,
            requests: Mutex::default(),
            ids: Ids::default(),
        }
    }

    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        lock(&self.queue).extend(replies);
    }

    pub fn queued(&self) -> usize {
        lock(&self.queue).len()
    }

    pub fn requests(&self) -> Vec<CapturedRequest> {
        lock(&self.requests).clone()
    }

    pub fn default_reply(&self) -> Reply {
        lock(&self.default_reply).clone()
    }

    pub fn set_default(&self, reply: Reply) {
        *lock(&self.default_reply) = reply;
    }

    /// Empty the script and the captured requests, and restore the starting default.
    pub fn reset(&self) {
        lock(&self.queue).clear();
        lock(&self.requests).clear();
        self.set_default(self.initial_default.clone());
    }

    fn next_reply(&self) -> Reply {
        lock(&self.queue).pop_front().unwrap_or_else(|| self.default_reply())
    }

    fn capture(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) {
        let mut kept = BTreeMap::new();
        let mut credentials = BTreeMap::new();
        for name in headers.keys() {
            let value = headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect::<Vec<_>>()
                .join(", ");
            if CREDENTIAL_HEADERS.contains(&name.as_str()) {
                let secret = value.strip_prefix("Bearer ").unwrap_or(&value);
                credentials.insert(name.to_string(), sha256_hex(secret));
            } else {
                kept.insert(name.to_string(), value);
            }
        }
        let body =
            serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
        lock(&self.requests).push(CapturedRequest {
            method: method.to_string(),
            path: uri.path().to_owned(),
            headers: kept,
            credentials,
            body,
        });
    }
}

pub(crate) fn app(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/messages", post(anthropic_messages))
        .route("/v1/chat/completions", post(openai_chat))
        .route("/_fake/script", post(control_script))
        .route("/_fake/reset", post(control_reset))
        .route("/_fake/requests", get(control_requests))
        .route("/_fake/health", get(control_health))
        .route("/_fake/default", get(control_get_default).put(control_set_default).post(control_set_default))
        .with_state(shared)
}

fn sse(frames: Vec<Frame>, delay_ms: u64, cut_after: Option<usize>, request_id: &str) -> Response {
    let mut response = frames::body(frames, Duration::from_millis(delay_ms), cut_after).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("request-id", id.clone());
        headers.insert("x-request-id", id);
    }
    response
}

fn error_response(status: u16, body: Value, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(body)).into_response();
    if let Some(secs) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// A non-streaming answer cut off halfway through its JSON.
fn cut_json(json: Value) -> Response {
    let text = json.to_string();
    let frame = Frame { text, chars: 1, terminal: false };
    let mut response = frames::body(vec![frame], Duration::ZERO, Some(0)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn as_message(cut: &CutReply) -> MessageReply {
    MessageReply { split: cut.split, chunk_delay_ms: cut.chunk_delay_ms, ..MessageReply::new(cut.blocks.clone()) }
}

/// The status a stream error would have had as an HTTP error (non-streaming requests).
fn stream_error_status(error_type: &str) -> u16 {
    match error_type {
        "overloaded_error" => 529,
        "rate_limit_error" => 429,
        _ => 500,
    }
}

/// A body field and the test its value must pass.
type FieldCheck = fn(&Value) -> bool;

/// What a request must carry before the real API would even look at it. Failing these
/// does not consume a scripted reply: it is the client under test that is wrong.
fn check_request(body: &Value, has_credential: bool, required: &[(&str, FieldCheck)]) -> Result<(), (u16, String)> {
    if !has_credential {
        return Err((401, "no API key was sent".to_owned()));
    }
    if !body.is_object() {
        return Err((400, "the body is not a JSON object".to_owned()));
    }
    for (field, valid) in required {
        if !valid(&body[*field]) {
            return Err((400, format!("{field}: field required or of the wrong type")));
        }
    }
    Ok(())
}

async fn anthropic_messages(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.capture(&method, &uri, &headers, &body);
    let request_id = format!("req_fake_{}", shared.ids.next());
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let invalid = |status: u16, message: String| {
        let reply = ErrorReply { status, error_type: None, message: Some(message), retry_after: None };
        error_response(status, anthropic::error_json(&reply, &request_id), None)
    };
    if let Err((status, message)) = check_request(
        &json,
        headers.contains_key("x-api-key"),
        &[("model", Value::is_string), ("max_tokens", Value::is_u64), ("messages", Value::is_array)],
    ) {
        return invalid(status, message);
    }
    if !headers.contains_key("anthropic-version") {
        return invalid(400, "anthropic-version: header is required".to_owned());
    }
    let model = json["model"].as_str().unwrap_or_default();
    let stream = json["stream"].as_bool().unwrap_or(false);
    let ids = &shared.ids;
    match shared.next_reply() {
        Reply::Message(m) if stream => {
            sse(anthropic::message_frames(model, &m, ids), m.chunk_delay_ms, None, &request_id)
        }
        Reply::Message(m) => Json(anthropic::message_json(model, &m, ids)).into_response(),
        Reply::Error(e) => error_response(e.status, anthropic::error_json(&e, &request_id), e.retry_after),
        Reply::Cut(c) if stream => {
            let m = as_message(&c);
            sse(anthropic::message_frames(model, &m, ids), c.chunk_delay_ms, Some(c.after_chars), &request_id)
        }
        Reply::Cut(c) => cut_json(anthropic::message_json(model, &as_message(&c), ids)),
        Reply::StreamError(s) if stream => sse(anthropic::stream_error_frames(model, &s, ids), 0, None, &request_id),
        Reply::StreamError(s) => {
            let reply = ErrorReply {
                status: stream_error_status(&s.error_type),
                error_type: Some(s.error_type.clone()),
                message: s.message.clone(),
                retry_after: None,
            };
            error_response(reply.status, anthropic::error_json(&reply, &request_id), None)
        }
    }
}

async fn openai_chat(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.capture(&method, &uri, &headers, &body);
    let request_id = format!("req_fake_{}", shared.ids.next());
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Err((status, message)) = check_request(
        &json,
        headers.contains_key(header::AUTHORIZATION),
        &[("model", Value::is_string), ("messages", Value::is_array)],
    ) {
        let reply = ErrorReply { status, error_type: None, message: Some(message), retry_after: None };
        return error_response(status, openai::error_json(&reply), None);
    }
    let model = json["model"].as_str().unwrap_or_default();
    let stream = json["stream"].as_bool().unwrap_or(false);
    let include_usage = json["stream_options"]["include_usage"].as_bool().unwrap_or(false);
    let ids = &shared.ids;
    match shared.next_reply() {
        Reply::Message(m) if stream => {
            sse(openai::message_frames(model, &m, include_usage, ids), m.chunk_delay_ms, None, &request_id)
        }
        Reply::Message(m) => Json(openai::completion_json(model, &m, ids)).into_response(),
        Reply::Error(e) => error_response(e.status, openai::error_json(&e), e.retry_after),
        Reply::Cut(c) if stream => {
            let m = as_message(&c);
            let frames = openai::message_frames(model, &m, include_usage, ids);
            sse(frames, c.chunk_delay_ms, Some(c.after_chars), &request_id)
        }
        Reply::Cut(c) => cut_json(openai::completion_json(model, &as_message(&c), ids)),
        Reply::StreamError(s) if stream => sse(openai::stream_error_frames(model, &s, ids), 0, None, &request_id),
        Reply::StreamError(s) => {
            let reply = ErrorReply {
                status: stream_error_status(&s.error_type),
                error_type: Some(s.error_type.clone()),
                message: s.message.clone(),
                retry_after: None,
            };
            error_response(reply.status, openai::error_json(&reply), None)
        }
    }
}

/// The body is one reply or a list of them.
async fn control_script(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let parsed = serde_json::from_slice::<Value>(&body).and_then(|value| {
        if value.is_array() { serde_json::from_value(value) } else { serde_json::from_value(value).map(|r| vec![r]) }
    });
    let replies: Vec<Reply> = match parsed {
        Ok(replies) => replies,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, Json(json!({"error": format!("invalid script: {e}")}))).into_response();
        }
    };
    let added = replies.len();
    shared.script(replies);
    Json(json!({"added": added, "queued": shared.queued()})).into_response()
}

async fn control_reset(State(shared): State<Arc<Shared>>) -> Json<Value> {
    shared.reset();
    Json(json!({"ok": true}))
}

async fn control_requests(State(shared): State<Arc<Shared>>) -> Json<Vec<CapturedRequest>> {
    Json(shared.requests())
}

async fn control_health(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "queued": shared.queued(),
        "requests": shared.requests().len(),
        "default_reply": shared.default_reply(),
    }))
}

async fn control_get_default(State(shared): State<Arc<Shared>>) -> Json<Reply> {
    Json(shared.default_reply())
}

async fn control_set_default(State(shared): State<Arc<Shared>>, Json(reply): Json<Reply>) -> Json<Reply> {
    shared.set_default(reply.clone());
    Json(reply)
}
