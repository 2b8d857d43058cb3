//! Archival of event logs: the logs of archived (and long idle) sessions move into the blob
//! store, the database shrinks, and every read — list, filters, pages, the stream and
//! `Last-Event-ID` — answers exactly as before. Each story runs on SQLite and PostgreSQL.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use openma_core::Platform;
use openma_core::ports::{Appended, EventQuery, InboxEntry, StoredEvent};
use openma_fake_model::{FakeModel, Reply};
use openma_types::Timestamp;
use openma_types::events::SessionEvent;
use openma_types::sessions::SessionStatus;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Backend, SseReader, TestApp, settled};

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

stories!(
    a_thousand_archived_sessions_read_identically_and_the_database_shrinks,
    the_scheduler_archives_an_archived_session_and_its_stream_replays_it,
    running_sessions_and_sessions_with_waiting_input_keep_their_rows,
    a_session_archived_for_idleness_runs_again_on_another_node_with_its_whole_log,
    deleting_a_session_deletes_its_archived_log,
);

/// A story's backend, with a fake model; the shared jobs run every `period`.
struct Ctx {
    backend: Backend,
    model: FakeModel,
}

async fn run<F, Fut>(backend: Backend, story: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let model = FakeModel::start().await;
    tokio::time::timeout(Duration::from_secs(120), story(Ctx { backend, model })).await.expect("story finished within 120 s");
}

impl Ctx {
    async fn app(&self, period: &str, idle_after: Option<&str>) -> Option<TestApp> {
        let (period, idle_after) = (period.to_owned(), idle_after.map(str::to_owned));
        support::spawn_app_custom(self.backend, Some(self.model.base_url()), move |o| {
            o.housekeeping.period = Some(period);
            o.housekeeping.archive_idle_after = idle_after;
        })
        .await
    }
}

/// The test's own handle on the server's database and blob store (what the scheduler's job uses).
fn admin(app: &TestApp) -> Platform {
    let mut p = app.platform.clone();
    let blobs = openma_server::blobs::ObjectBlobs::open(&openma_server::blobs::BlobUrl::Local(app.data_dir().join("blobs"))).unwrap();
    p.blobs = Some(Arc::new(blobs));
    p
}

async fn tenant(app: &TestApp) -> openma_core::TenantId {
    app.platform.find_tenant("default").await.unwrap().id
}

async fn session(app: &TestApp) -> String {
    let a = app.agent("archivist").await;
    app.ok("/v1/sessions", json!({"agent": a["id"]})).await["id"].as_str().unwrap().to_owned()
}

/// Every event of a session through the API, oldest first.
async fn listed(app: &TestApp, sid: &str) -> Vec<Value> {
    let r = app.get(&format!("/v1/sessions/{sid}/events?limit=1000")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["data"].as_array().unwrap().clone()
}

/// Every event of a session through pages of `limit`, following `next_page`.
async fn paged(app: &TestApp, sid: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut page: Option<String> = None;
    loop {
        let url = match &page {
            Some(p) => format!("/v1/sessions/{sid}/events?{query}&page={p}"),
            None => format!("/v1/sessions/{sid}/events?{query}"),
        };
        let r = app.get(&url).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        out.extend(r.body["data"].as_array().unwrap().iter().cloned());
        match r.body["next_page"].as_str() {
            Some(p) if !p.is_empty() => page = Some(p.to_owned()),
            _ => return out,
        }
    }
}

/// The reads an archived log must answer as before: the whole list, newest first, one type,
/// and small pages (whose cursors cross from the archive to the rows).
async fn reads_match(app: &TestApp, sid: &str, expected: &[Value]) {
    assert_eq!(listed(app, sid).await, expected, "the list of {sid}");
    let reversed: Vec<Value> = expected.iter().rev().cloned().collect();
    assert_eq!(paged(app, sid, "limit=3&order=desc").await, reversed, "newest first, in pages");
    assert_eq!(paged(app, sid, "limit=2").await, expected, "oldest first, in pages");
    let messages: Vec<Value> = expected.iter().filter(|e| e["type"] == "user.message").cloned().collect();
    assert_eq!(paged(app, sid, "limit=1&types[]=user.message").await, messages, "one type");
}

/// A plausible conversation of `turns` turns, as the runtime would have logged it.
fn conversation(platform: &Platform, first_seq: i64, turns: usize) -> Vec<StoredEvent> {
    let mut events = Vec::new();
    let mut push = |body: Value| {
        let mut body = body;
        body["id"] = json!(platform.ids.new_id("sevt"));
        body["processed_at"] = json!(platform.clock.now().to_string());
        let event: SessionEvent = serde_json::from_value(body).unwrap();
        events.push(StoredEvent { seq: first_seq + events.len() as i64, event, internal: None });
    };
    for t in 0..turns {
        push(json!({"type": "user.message", "content": [{"type": "text", "text": format!("question {t}: {}", "please look into it ".repeat(10))}]}));
        push(json!({"type": "session.status_running"}));
        push(json!({"type": "agent.message", "content": [{"type": "text", "text": format!("answer {t}: {}", "here is what I found ".repeat(20))}]}));
        push(json!({"type": "session.status_idle", "stop_reason": {"type": "end_turn"}}));
    }
    events
}

async fn event_rows(app: &TestApp) -> i64 {
    match sql(app).await {
        Db::Sqlite(p) => sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(&p).await.unwrap(),
        Db::Pg(p) => sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(&p).await.unwrap(),
    }
}

/// Bytes the database's data takes: SQLite's pages in use (freed pages are reused, and
/// `VACUUM` returns them to the file system); PostgreSQL's `events` table with its indexes
/// and TOAST once vacuumed (plain `VACUUM` would leave the space for reuse).
async fn data_bytes(app: &TestApp) -> i64 {
    match sql(app).await {
        Db::Sqlite(p) => {
            let pages: i64 = sqlx::query_scalar("SELECT page_count FROM pragma_page_count()").fetch_one(&p).await.unwrap();
            let free: i64 = sqlx::query_scalar("SELECT freelist_count FROM pragma_freelist_count()").fetch_one(&p).await.unwrap();
            let size: i64 = sqlx::query_scalar("SELECT page_size FROM pragma_page_size()").fetch_one(&p).await.unwrap();
            (pages - free) * size
        }
        Db::Pg(p) => {
            sqlx::query("VACUUM FULL events").execute(&p).await.unwrap();
            sqlx::query_scalar("SELECT pg_total_relation_size('events')").fetch_one(&p).await.unwrap()
        }
    }
}

enum Db {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

async fn sql(app: &TestApp) -> Db {
    let url = app.database_url();
    if url.starts_with("sqlite:") {
        Db::Sqlite(sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(&url).await.unwrap())
    } else {
        Db::Pg(sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap())
    }
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// Waits (up to 20 s) until the session's log is archived through `last_seq`.
async fn archived_through(app: &TestApp, sid: &str, last_seq: i64) {
    let t = tenant(app).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = app.platform.store.event_log_archive(&t, sid).await.unwrap();
        if a.as_ref().is_some_and(|a| a.last_seq == last_seq) {
            return;
        }
        assert!(Instant::now() < deadline, "{sid} was not archived through {last_seq}: {a:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_thousand_archived_sessions_read_identically_and_the_database_shrinks(ctx: Ctx) {
    const SESSIONS: usize = 1000;
    // the server's own job stays out of the way: the test runs the archival pass itself, to time it
    let Some(app) = ctx.app("1h", None).await else { return };
    let t = tenant(&app).await;
    let agent = app.agent("archivist").await;
    let mut sids = Vec::new();
    for _ in 0..SESSIONS {
        sids.push(app.ok("/v1/sessions", json!({"agent": agent["id"]})).await["id"].as_str().unwrap().to_owned());
    }
    for (i, sid) in sids.iter().enumerate() {
        let first = app.platform.store.last_event_seq(&t, sid).await.unwrap() + 1;
        let events = conversation(&app.platform, first, 3 + i % 5);
        assert_eq!(app.platform.store.append_events(&t, sid, &events, None, &[], &[], None).await.unwrap(), Appended::Done);
    }
    // archived through the API (each gets its `session.status_terminated`)
    futures::stream::iter(&sids)
        .for_each_concurrent(8, |sid| {
            let app = &app;
            async move {
                let r = app.post(&format!("/v1/sessions/{sid}/archive"), json!({})).await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            }
        })
        .await;
    let before: Vec<Vec<Value>> = futures::stream::iter(&sids).then(|sid| listed(&app, sid)).collect().await;
    let (rows_before, bytes_before) = (event_rows(&app).await, data_bytes(&app).await);
    let events: usize = before.iter().map(Vec::len).sum();
    assert_eq!(rows_before as usize, events);

    let started = Instant::now();
    let report = admin(&app).archive_event_logs(None).await.unwrap();
    let took = started.elapsed();
    assert_eq!((report.sessions, report.events as usize), (SESSIONS, events));

    let (rows_after, bytes_after) = (event_rows(&app).await, data_bytes(&app).await);
    let blobs = dir_bytes(&app.data_dir().join("blobs").join("event-logs"));
    let measured = match ctx.backend {
        Backend::Sqlite => "database pages in use",
        Backend::Postgres => "events table with indexes, vacuumed",
    };
    eprintln!(
        "archival ({:?}): {SESSIONS} sessions, {events} events in {:.2} s ({:.0} sessions/s); events rows {rows_before} -> {rows_after}; \
         {measured}: {bytes_before} -> {bytes_after} bytes; archives {blobs} bytes",
        ctx.backend,
        took.as_secs_f64(),
        SESSIONS as f64 / took.as_secs_f64()
    );
    assert_eq!(rows_after, 0, "every archived session's rows left the database");
    assert!(bytes_after * 2 < bytes_before, "the database shrank: {bytes_before} -> {bytes_after}");
    assert!(blobs > 0 && (blobs as i64) < bytes_before, "the archives are compressed");

    let after: Vec<Vec<Value>> = futures::stream::iter(&sids).then(|sid| listed(&app, sid)).collect().await;
    assert!(before == after, "every archived session lists the same events (ids, order, content)");
    for (sid, expected) in sids.iter().zip(&before).step_by(97) {
        reads_match(&app, sid, expected).await;
    }
    // a second pass finds nothing left to do
    assert_eq!(admin(&app).archive_event_logs(None).await.unwrap().sessions, 0);
}

async fn the_scheduler_archives_an_archived_session_and_its_stream_replays_it(ctx: Ctx) {
    let Some(app) = ctx.app("200ms", None).await else { return };
    let sid = session(&app).await;
    for text in ["first", "second"] {
        ctx.model.script(vec![Reply::text(format!("{text} answer"))]);
        let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
        app.ok(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]})).await;
        stream.until(settled).await;
    }
    app.ok(&format!("/v1/sessions/{sid}/archive"), json!({})).await;
    let expected = listed(&app, &sid).await;
    assert_eq!(expected.last().unwrap()["type"], "session.status_terminated");
    archived_through(&app, &sid, expected.len() as i64).await;
    assert_eq!(event_rows(&app).await, 0);
    reads_match(&app, &sid, &expected).await;

    // a stream from the start replays the whole log, then ends with the session
    let mut all = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), Some("0")).await;
    let replayed = all.until(|e| e.event == "session.status_terminated").await;
    assert_eq!(replayed.iter().map(|e| e.data.clone()).collect::<Vec<_>>(), expected);
    assert_eq!(replayed.iter().map(|e| e.id.clone().unwrap()).collect::<Vec<_>>(), expected.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>());
    assert!(all.next().await.is_none(), "the stream of a terminated session ends");
    // Last-Event-ID by event id resumes right after it
    let third = expected[2]["id"].as_str().unwrap();
    let mut rest = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), Some(third)).await;
    let resumed = rest.until(|e| e.event == "session.status_terminated").await;
    assert_eq!(resumed.iter().map(|e| e.data.clone()).collect::<Vec<_>>(), expected[3..]);
    // an id of no event of the session is still refused
    let r = app.http.get(format!("{}/v1/sessions/{sid}/events/stream", app.base)).bearer_auth(&app.key).header("last-event-id", "sevt_nope").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

async fn running_sessions_and_sessions_with_waiting_input_keep_their_rows(ctx: Ctx) {
    let Some(app) = ctx.app("1h", None).await else { return };
    let t = tenant(&app).await;
    let (running, waiting) = (session(&app).await, session(&app).await);
    for sid in [&running, &waiting] {
        let first = app.platform.store.last_event_seq(&t, sid).await.unwrap() + 1;
        assert_eq!(app.platform.store.append_events(&t, sid, &conversation(&app.platform, first, 2), None, &[], &[], None).await.unwrap(), Appended::Done);
    }
    let s = app.platform.store.get_session(&t, &running).await.unwrap().unwrap();
    let mut r = s.clone();
    r.status = SessionStatus::Running;
    r.updated_at = s.updated_at.strictly_after(s.updated_at);
    assert!(app.platform.store.update_session(&t, &r, s.updated_at).await.unwrap());
    let input: SessionEvent = serde_json::from_value(json!({"id": "sevt_waiting01", "type": "user.message", "content": [{"type": "text", "text": "hi"}], "processed_at": null})).unwrap();
    app.platform.store.push_inbox(&t, &waiting, &InboxEntry { event: input, accepted_at: app.platform.clock.now() }).await.unwrap();
    let rows = event_rows(&app).await;

    // every session counts as idle for long enough, yet neither may be archived
    let far_future = Some(Timestamp::from_micros(i64::MAX / 2));
    let report = admin(&app).archive_event_logs(far_future).await.unwrap();
    assert_eq!(report.sessions, 0, "{report:?}");
    assert_eq!(event_rows(&app).await, rows);
    for sid in [&running, &waiting] {
        assert!(app.platform.store.event_log_archive(&t, sid).await.unwrap().is_none());
        // nor when asked for directly, with the state it was picked in
        let seen = app.platform.store.get_session(&t, sid).await.unwrap().unwrap().updated_at;
        assert_eq!(admin(&app).archive_session_log(&t, sid, seen).await.unwrap(), None);
    }
    assert_eq!(event_rows(&app).await, rows);

    // once the session stops running, its log goes
    let mut idle = r.clone();
    idle.status = SessionStatus::Idle;
    idle.updated_at = r.updated_at.strictly_after(r.updated_at);
    assert!(app.platform.store.update_session(&t, &idle, r.updated_at).await.unwrap());
    assert_eq!(admin(&app).archive_event_logs(far_future).await.unwrap().sessions, 1);
    assert!(app.platform.store.event_log_archive(&t, &running).await.unwrap().is_some());
    assert!(app.platform.store.event_log_archive(&t, &waiting).await.unwrap().is_none());
}

async fn a_session_archived_for_idleness_runs_again_on_another_node_with_its_whole_log(ctx: Ctx) {
    let Some(app) = ctx.app("200ms", Some("1s")).await else { return };
    let sid = session(&app).await;
    ctx.model.script(vec![Reply::text("the first answer")]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    app.ok(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "remember the word heliotrope"}]}]})).await;
    stream.until(settled).await;
    let first = listed(&app, &sid).await;
    archived_through(&app, &sid, first.len() as i64).await;
    assert_eq!(event_rows(&app).await, 0);
    reads_match(&app, &sid, &first).await;

    // a second node has no actor for the session: it loads the log from the archive
    let node = second_node(&app, ctx.model.base_url(), "200ms", "1s").await;
    ctx.model.script(vec![Reply::text("the second answer")]);
    let mut stream = SseReader::open(&node, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    node.ok(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "which word?"}]}]})).await;
    stream.until(settled).await;
    let request = ctx.model.requests().last().unwrap().body.to_string();
    assert!(request.contains("heliotrope") && request.contains("the first answer"), "the model saw the archived turn: {request}");

    let both = listed(&node, &sid).await;
    assert_eq!(both[..first.len()], first[..], "the archived part is unchanged");
    assert!(both.len() > first.len() + 2);
    let ids: std::collections::HashSet<&str> = both.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), both.len(), "no event twice");
    // part archive, part rows: every read still answers the whole log
    assert!(event_rows(&app).await > 0);
    reads_match(&node, &sid, &both).await;
    // idle again, the new tail joins the archive
    archived_through(&app, &sid, both.len() as i64).await;
    assert_eq!(event_rows(&app).await, 0);
    reads_match(&app, &sid, &both).await;
    let t = tenant(&app).await;
    let archive = app.platform.store.event_log_archive(&t, &sid).await.unwrap().unwrap();
    assert_eq!(archive.events, both.len() as i64);
    let all = admin(&app).list_events(&t, &sid, &EventQuery { limit: 10_000, ..Default::default() }).await.unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=both.len() as i64).collect::<Vec<_>>(), "seq stays contiguous");
}

/// Another server on the same database and blob store (a second node of a cluster), with the
/// first's house-keeping settings: the node that claims a shared job sets when it is next due,
/// so a node with a longer period would hold the archival back for that long.
async fn second_node(app: &TestApp, model_base: String, period: &str, idle_after: &str) -> TestApp {
    let (url, blobs) = (app.database_url(), format!("file://{}", app.data_dir().join("blobs").display()));
    let (period, idle_after) = (period.to_owned(), idle_after.to_owned());
    support::spawn_app_custom(Backend::Sqlite, Some(model_base), move |o| {
        o.database_url = Some(url);
        o.blob_url = Some(blobs);
        o.housekeeping.period = Some(period);
        o.housekeeping.archive_idle_after = Some(idle_after);
    })
    .await
    .unwrap()
}

async fn deleting_a_session_deletes_its_archived_log(ctx: Ctx) {
    let Some(app) = ctx.app("200ms", None).await else { return };
    let t = tenant(&app).await;
    let sid = session(&app).await;
    let first = app.platform.store.last_event_seq(&t, &sid).await.unwrap() + 1;
    assert_eq!(app.platform.store.append_events(&t, &sid, &conversation(&app.platform, first, 1), None, &[], &[], None).await.unwrap(), Appended::Done);
    app.ok(&format!("/v1/sessions/{sid}/archive"), json!({})).await;
    let last = app.platform.store.last_event_seq(&t, &sid).await.unwrap();
    archived_through(&app, &sid, last).await;
    let blob = app.data_dir().join("blobs").join(openma_core::event_log::archive_key(&t, &sid));
    assert!(blob.exists(), "{}", blob.display());
    assert_eq!(app.delete(&format!("/v1/sessions/{sid}")).await.status, StatusCode::OK);
    assert!(!blob.exists(), "the archive went with the session");
    assert_eq!(app.get(&format!("/v1/sessions/{sid}/events")).await.status, StatusCode::NOT_FOUND);
}
