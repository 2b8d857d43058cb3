//! `image` and `document` blocks whose source is a `file_id`: checked when the event is
//! accepted, kept as references in the log, and resolved to the file's content only in
//! the request the (fake) model receives: base64 images and PDFs, text documents, and a
//! note for a file that has gone since.

mod support;

use std::time::Duration;

use base64::Engine;
use openma_fake_model::{FakeModel, Reply};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Backend, SseReader, TestApp, settled, spawn_app_with_model};

macro_rules! stories {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::run(super::Backend::Sqlite, super::$name).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::run(super::Backend::Postgres, super::$name).await } )*
        }
    };
}

async fn run<F, Fut>(backend: Backend, story: F)
where
    F: FnOnce(TestApp, FakeModel) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let model = FakeModel::start().await;
    let Some(app) = spawn_app_with_model(backend, Some(model.base_url())).await else { return };
    tokio::time::timeout(Duration::from_secs(60), story(app, model)).await.expect("story finished within 60 s");
}

stories!(
    files_reach_the_model_as_content_while_the_log_keeps_the_references,
    unusable_files_are_refused_and_nothing_is_appended,
    a_file_deleted_after_acceptance_becomes_a_note,
    initial_events_may_name_files,
);

/// The 8-byte PNG signature and an IHDR chunk: enough to be a PNG by its first bytes.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89";
const PDF: &[u8] = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";
const NOTES: &str = "# Notes\nthe launch moves to Tuesday\n";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn id(v: &Value) -> &str {
    v["id"].as_str().unwrap()
}

fn file_block(kind: &str, file_id: &str) -> Value {
    json!({"type": kind, "source": {"type": "file", "file_id": file_id}})
}

async fn session(app: &TestApp, model: &str) -> String {
    let agent = app.ok("/v1/agents", json!({"name": "reader", "model": model})).await;
    id(&app.ok("/v1/sessions", json!({"agent": agent["id"]})).await).to_owned()
}

/// Sends one user message and waits for the turn to end; returns the sent event's echo.
async fn turn(app: &TestApp, sid: &str, content: Value) -> Value {
    let mut stream = SseReader::open(app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    let sent = app.ok(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": content}]})).await;
    let events = stream.until(settled).await;
    assert_eq!(events.last().unwrap().data["stop_reason"]["type"], "end_turn", "{:?}", events.last().unwrap().data);
    sent["data"][0].clone()
}

/// The blocks of the first user message the model received in `request`, without the
/// prompt-cache markers.
fn first_user_content(request: &Value) -> Vec<Value> {
    let mut blocks = request["messages"][0]["content"].as_array().unwrap().clone();
    for b in &mut blocks {
        b.as_object_mut().unwrap().remove("cache_control");
    }
    blocks
}

async fn user_messages(app: &TestApp, sid: &str) -> Vec<Value> {
    app.get(&format!("/v1/sessions/{sid}/events?types[]=user.message")).await.body["data"].as_array().unwrap().clone()
}

async fn files_reach_the_model_as_content_while_the_log_keeps_the_references(app: TestApp, model: FakeModel) {
    let png = app.upload("pixel.png", "image/png", PNG).await;
    let pdf = app.upload("report.pdf", "application/pdf", PDF).await;
    let notes = app.upload("notes.md", "text/markdown", NOTES.as_bytes()).await;
    let sid = session(&app, "claude-sonnet-4-6").await;
    let content = json!([
        {"type": "text", "text": "what do these say?"},
        file_block("image", id(&png)),
        {"type": "document", "source": {"type": "file", "file_id": id(&pdf)}, "title": "Q3 report", "context": "the board's copy"},
        {"type": "document", "source": {"type": "file", "file_id": id(&notes)}, "title": "notes.md"},
    ]);
    let echo = turn(&app, &sid, content.clone()).await;
    assert_eq!(echo["content"], content, "the client sees its blocks as sent");

    let want = vec![
        json!({"type": "text", "text": "what do these say?"}),
        json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64(PNG)}}),
        json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": b64(PDF)}, "title": "Q3 report", "context": "the board's copy"}),
        json!({"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": NOTES}, "title": "notes.md"}),
    ];
    let requests = model.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(first_user_content(&requests[0].body), want);

    // the log holds the references only
    let logged = user_messages(&app, &sid).await;
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0]["content"], content);
    let whole_log = app.get(&format!("/v1/sessions/{sid}/events")).await.body.to_string();
    assert!(!whole_log.contains(&b64(PDF)) && !whole_log.contains("launch moves"), "file content leaked into the log");

    // the next turn sends the history with the same content, read once: the actor keeps it
    // even when its blob is gone behind the store's back (the file's row still says it exists)
    let blobs = app.data_dir().join("blobs");
    std::fs::remove_dir_all(&blobs).unwrap();
    turn(&app, &sid, json!([{"type": "text", "text": "and now?"}])).await;
    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(first_user_content(&requests[1].body), want, "the second step reuses what the first one read");
}

async fn unusable_files_are_refused_and_nothing_is_appended(app: TestApp, model: FakeModel) {
    let sid = session(&app, "claude-sonnet-4-6").await;
    let csv = app.upload("data.csv", "text/csv", b"a,b\n1,2\n").await;
    let zip = app.upload("bundle.zip", "application/zip", b"PK\x03\x04").await;
    let png = app.upload("pixel.png", "image/png", PNG).await;
    let big = app.upload("big.png", "image/png", &vec![0u8; 5 * 1024 * 1024 + 1]).await;
    let empty = app.upload("empty.txt", "text/plain", b"").await;
    let stale = app.upload("old.txt", "text/plain", b"stale").await;
    // age it through the admin's handle on the same database
    let tenant = app.platform.find_tenant("default").await.unwrap().id;
    let mut stored = app.platform.store.get_file(&tenant, id(&stale)).await.unwrap().unwrap();
    app.platform.store.delete_file(&tenant, id(&stale)).await.unwrap();
    stored.meta.expires_at = Some(openma_types::Timestamp::from_micros(stored.meta.created_at.as_micros() + 1));
    app.platform.store.insert_file(&tenant, &stored).await.unwrap();
    let other = app.other_tenant("blocks-other").await;
    let theirs = app.upload_parts(&other, &[("file", Some("theirs.txt"), Some("text/plain"), b"private")]).await.body;

    let many: Vec<Value> = (0..101).map(|_| file_block("document", id(&csv))).collect();
    for (content, status, error_code) in [
        (vec![file_block("document", id(&theirs))], StatusCode::NOT_FOUND, None),
        (vec![file_block("image", "file_011CNha8iCJcU1wXNR6q4V8w")], StatusCode::NOT_FOUND, None),
        (vec![file_block("document", "not-a-file-id")], StatusCode::NOT_FOUND, None),
        (vec![file_block("document", id(&stale))], StatusCode::BAD_REQUEST, Some("file_expired")),
        (vec![file_block("image", id(&csv))], StatusCode::BAD_REQUEST, None),
        (vec![file_block("document", id(&zip))], StatusCode::BAD_REQUEST, None),
        (vec![file_block("document", id(&png))], StatusCode::BAD_REQUEST, None),
        (vec![file_block("image", id(&big))], StatusCode::BAD_REQUEST, None),
        (vec![file_block("document", id(&empty))], StatusCode::BAD_REQUEST, None),
        (vec![json!({"type": "image", "source": {"type": "file"}})], StatusCode::BAD_REQUEST, None),
        (many, StatusCode::BAD_REQUEST, None),
    ] {
        // a good event before the bad one: all or nothing
        let events = json!([
            {"type": "user.message", "content": [{"type": "text", "text": "fine"}]},
            {"type": "user.message", "content": content},
        ]);
        let r = app.post(&format!("/v1/sessions/{sid}/events"), json!({"events": events})).await;
        assert_eq!(r.status, status, "{}", r.body);
        let kind = if status == StatusCode::NOT_FOUND { "not_found_error" } else { "invalid_request_error" };
        assert_eq!(r.error_type(), kind);
        if let Some(code) = error_code {
            assert_eq!(r.body["error"]["details"]["error_code"], code, "{}", r.body);
        }
    }
    assert_eq!(app.get(&format!("/v1/sessions/{sid}/events")).await.body["data"], json!([]), "nothing was appended");
    assert_eq!(app.get(&format!("/v1/sessions/{sid}")).await.body["status"], "idle");
    assert!(model.requests().is_empty());

    // a hundred file documents are fine
    let hundred: Vec<Value> = (0..100).map(|_| file_block("document", id(&csv))).collect();
    model.script(vec![Reply::text("read them")]);
    turn(&app, &sid, Value::Array(hundred)).await;
    let got = first_user_content(&model.requests()[0].body);
    assert_eq!(got.len(), 100);
    assert!(got.iter().all(|b| b["source"] == json!({"type": "text", "media_type": "text/plain", "data": "a,b\n1,2\n"})));
}

async fn a_file_deleted_after_acceptance_becomes_a_note(app: TestApp, model: FakeModel) {
    let notes = app.upload("notes.txt", "text/plain", NOTES.as_bytes()).await;
    let png = app.upload("pixel.png", "image/png", PNG).await;
    let sid = session(&app, "claude-sonnet-4-6").await;
    let content = json!([file_block("document", id(&notes)), file_block("image", id(&png)), {"type": "text", "text": "read"}]);
    turn(&app, &sid, content.clone()).await;
    assert_eq!(first_user_content(&model.requests()[0].body)[0]["source"]["data"], NOTES);

    assert_eq!(app.delete(&format!("/v1/files/{}", id(&notes))).await.status, StatusCode::OK);
    turn(&app, &sid, json!([{"type": "text", "text": "again"}])).await;
    let requests = model.requests();
    let blocks = first_user_content(&requests[1].body);
    assert_eq!(blocks[0], json!({"type": "text", "text": format!("(file {} is no longer available)", id(&notes))}));
    assert_eq!(blocks[1]["source"]["data"], b64(PNG), "the other file is still sent");
    assert!(!requests[1].body.to_string().contains("launch moves"));
    assert_eq!(user_messages(&app, &sid).await[0]["content"], content, "the log is unchanged");
    let last = app.get(&format!("/v1/sessions/{sid}")).await.body;
    assert_eq!(last["status"], "idle");
}

async fn initial_events_may_name_files(app: TestApp, model: FakeModel) {
    let notes = app.upload("notes.txt", "text/plain", NOTES.as_bytes()).await;
    let agent = app.ok("/v1/agents", json!({"name": "reader", "model": "claude-sonnet-4-6"})).await;
    let missing = app
        .post("/v1/sessions", json!({"agent": agent["id"], "initial_events": [{"type": "user.message", "content": [file_block("document", "file_011CNha8iCJcU1wXNR6q4V8w")]}]}))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);
    let wrong = app
        .post("/v1/sessions", json!({"agent": agent["id"], "initial_events": [{"type": "user.message", "content": [file_block("image", id(&notes))]}]}))
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{}", wrong.body);
    assert!(wrong.body["error"]["message"].as_str().unwrap().contains("initial_events[0].content[0]"), "{}", wrong.body);
    assert_eq!(app.get("/v1/sessions").await.body["data"], json!([]), "no session was created");

    let content = json!([file_block("document", id(&notes))]);
    let s = app.ok("/v1/sessions", json!({"agent": agent["id"], "initial_events": [{"type": "user.message", "content": content}]})).await;
    let sid = id(&s).to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while app.get(&format!("/v1/sessions/{sid}")).await.body["status"] != "idle" {
        assert!(std::time::Instant::now() < deadline, "the session went idle");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(first_user_content(&model.requests()[0].body), vec![json!({"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": NOTES}})]);
    assert_eq!(user_messages(&app, &sid).await[0]["content"], content);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_compatible_model_gets_data_urls_text_and_file_parts() {
    let model = FakeModel::start().await;
    let app = spawn_app_with_model(Backend::Sqlite, Some(model.base_url())).await.unwrap();
    let png = app.upload("pixel.png", "image/png", PNG).await;
    let pdf = app.upload("report.pdf", "application/pdf", PDF).await;
    let notes = app.upload("notes.txt", "text/plain", NOTES.as_bytes()).await;
    let sid = session(&app, "openai/llama-3.3-70b").await;
    turn(&app, &sid, json!([
        {"type": "text", "text": "look"},
        file_block("image", id(&png)),
        {"type": "document", "source": {"type": "file", "file_id": id(&pdf)}, "title": "report.pdf"},
        {"type": "document", "source": {"type": "file", "file_id": id(&notes)}, "title": "notes.txt"},
    ]))
    .await;
    let body = &model.requests()[0].body;
    assert_eq!(model.requests()[0].path, "/v1/chat/completions");
    assert_eq!(
        body["messages"][0]["content"],
        json!([
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", b64(PNG))}},
            {"type": "text", "text": "Document: report.pdf"},
            {"type": "file", "file": {"filename": "report.pdf", "file_data": format!("data:application/pdf;base64,{}", b64(PDF))}},
            {"type": "text", "text": format!("Document: notes.txt\n{NOTES}")},
        ])
    );
}
