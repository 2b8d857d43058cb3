//! Cluster mode: real `openma serve --cluster` processes on loopback ports and one
//! PostgreSQL database. A stream on one node sees every event of a session run by another,
//! once and in order, across a `kill -9` of the owner; a node that was paused (SIGSTOP)
//! and lost its lease cannot append when it continues; SIGTERM hands sessions over at once.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use openma_fake_model::{FakeModel, Reply};
use serde_json::{Value, json};
use support::{Lcg, PgDatabase, ServerProcess, SseReader};

mod support;

const KEY: &str = "sk-oma-cluster-0123456789abcdefgh";
const ROOT: &str = "cluster-test-root-secret-0123456789abcdef";
const FINAL: &str = "the final answer";

fn node(dir: &Path, name: &str, db: &PgDatabase, blobs: &Path, model: &str, lease_ttl_ms: u64) -> ServerProcess {
    let blob_url = format!("file://{}", blobs.display());
    let ttl = lease_ttl_ms.to_string();
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    ServerProcess::start(
        &data,
        &[
            ("OPENMA_CLUSTER", "true"),
            ("OPENMA_NODE_ID", name),
            ("OPENMA_LEASE_TTL_MS", ttl.as_str()),
            ("OPENMA_DATABASE_URL", db.url.as_str()),
            ("OPENMA_BLOB_URL", blob_url.as_str()),
            ("PLATFORM_ROOT_SECRET", ROOT),
            ("OPENMA_BOOTSTRAP_API_KEY", KEY),
            ("ANTHROPIC_API_KEY", "sk-ant-fake"),
            ("ANTHROPIC_BASE_URL", model),
            ("OPENMA_MODEL_RETRY_BASE_MS", "10"),
            ("OPENMA_MODEL_MAX_RETRIES", "20"),
        ],
    )
}

fn signal(server: &ServerProcess, sig: &str) {
    let ok = std::process::Command::new("kill").arg(format!("-{sig}")).arg(server.child.id().to_string()).status().unwrap().success();
    assert!(ok, "kill -{sig}");
}

struct Cluster {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    blobs: std::path::PathBuf,
    db: PgDatabase,
    http: reqwest::Client,
}

impl Cluster {
    async fn new() -> Option<Cluster> {
        openma_models::install_tls_provider();
        let db = PgDatabase::create().await?;
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
        let dir = tmp.path().to_owned();
        let blobs = dir.join("blobs");
        std::fs::create_dir_all(&blobs).unwrap();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Some(Cluster { _tmp: tmp, dir, blobs, db, http })
    }

    fn node(&self, name: &str, model: &FakeModel, lease_ttl_ms: u64) -> ServerProcess {
        node(&self.dir, name, &self.db, &self.blobs, &model.base_url(), lease_ttl_ms)
    }

    async fn post(&self, base: &str, path: &str, body: Value) -> Value {
        let r = self.http.post(format!("{base}{path}")).bearer_auth(KEY).json(&body).send().await.unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status.is_success(), "POST {path} on {base}: {status} {v}");
        v
    }

    async fn get(&self, base: &str, path: &str) -> Value {
        self.http.get(format!("{base}{path}")).bearer_auth(KEY).send().await.unwrap().json().await.unwrap()
    }

    async fn session(&self, base: &str, tools: Value) -> String {
        let agent = self.post(base, "/v1/agents", json!({"name": "c", "model": "claude-sonnet-4-6", "tools": tools})).await;
        let s = self.post(base, "/v1/sessions", json!({"agent": agent["id"]})).await;
        s["id"].as_str().unwrap().to_owned()
    }

    async fn say(&self, base: &str, sid: &str, text: &str) -> String {
        let body = json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]});
        let v = self.post(base, &format!("/v1/sessions/{sid}/events"), body).await;
        v["data"][0]["id"].as_str().unwrap().to_owned()
    }

    /// The whole log, through the API of node `base`.
    async fn log(&self, base: &str, sid: &str) -> Vec<Value> {
        let v = self.get(base, &format!("/v1/sessions/{sid}/events?limit=1000")).await;
        v["data"].as_array().unwrap().clone()
    }

    /// The session's lease row: the node named on it and its token (how often it changed hands).
    async fn lease(&self, sid: &str) -> (String, i64) {
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&self.db.url).await.unwrap();
        let row: (String, i64) = sqlx::query_as("SELECT node_id, token FROM session_leases WHERE session_id = $1").bind(sid).fetch_one(&pool).await.unwrap();
        pool.close().await;
        row
    }

    async fn wait_idle(&self, base: &str, sid: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let s = self.get(base, &format!("/v1/sessions/{sid}")).await;
            if s["status"] == "idle" {
                return;
            }
            assert!(Instant::now() < deadline, "session {sid} is still {} after {within:?}", s["status"]);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits until the model was asked (the turn is under way).
async fn requested(model: &FakeModel) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while model.requests().is_empty() {
        assert!(Instant::now() < deadline, "no model request");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The log is whole: ids unique, every tool use answered once, the work finished.
fn check_log(log: &[Value]) {
    let ids: BTreeSet<&str> = log.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), log.len(), "an event id appears twice");
    for u in log.iter().filter(|e| e["type"] == "agent.tool_use") {
        let n = log.iter().filter(|e| e["type"] == "agent.tool_result" && e["tool_use_id"] == u["id"]).count();
        assert_eq!(n, 1, "tool use {} has {n} results", u["id"]);
    }
    let last = log.iter().rev().find(|e| e["type"] == "agent.message").expect("an answer");
    assert_eq!(last["content"][0]["text"], FINAL);
    assert_eq!(log.last().unwrap()["type"], "session.status_idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_one_node_follows_a_session_across_the_owners_death() {
    let Some(c) = Cluster::new().await else { return };
    let model = FakeModel::start().await;
    model.set_default_reply(Reply::text(FINAL));
    // a slow tool-using turn, so the owner dies in the middle of it
    let mut script = Vec::new();
    for i in 0..6 {
        script.push(Reply::tool_use("read", json!({"file_path": format!("/workspace/f{i}")})).delay_ms(40));
    }
    script.push(Reply::text(FINAL).delay_ms(20).split(4));
    model.script(script);
    let a = c.node("node-a", &model, 2000);
    let b = c.node("node-b", &model, 2000);
    let cc = c.node("node-c", &model, 2000);
    let sid = c.session(&a.base, json!([{"type": "read"}])).await;
    let mut stream = SseReader::connect(&c.http, &format!("{}/v1/sessions/{sid}/events/stream", a.base), KEY, None).await;

    // the message goes to B, which takes the session
    let first = c.say(&b.base, &sid, "go").await;
    let mut seen = stream.until(|e| e.event == "agent.tool_result").await;
    let holder: Value = c.get(&b.base, &format!("/v1/sessions/{sid}")).await;
    assert_eq!(holder["status"], "running");
    // kill the owner mid-turn (B took it; check through the database's view via C)
    let killed_at = Instant::now();
    drop(b);
    // a message sent to C while the owner is dead is accepted and lands in the same turn or the next
    let second = c.say(&cc.base, &sid, "and then?").await;
    let rest = stream.until(|e| e.event == "session.status_idle" && e.data["stop_reason"]["type"] == "end_turn").await;
    let takeover = killed_at.elapsed();
    seen.extend(rest);
    c.wait_idle(&cc.base, &sid, Duration::from_secs(30)).await;
    // anything after the idle the stream saw (a second turn for the late message)
    let log = c.log(&a.base, &sid).await;
    if seen.len() < log.len() {
        let tail_len = log.len() - seen.len();
        for _ in 0..tail_len {
            seen.push(stream.next().await.expect("stream goes on"));
        }
    }
    let streamed: Vec<&str> = seen.iter().map(|e| e.data["id"].as_str().unwrap()).collect();
    let logged: Vec<&str> = log.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(streamed, logged, "the stream on A has every event once, in order");
    check_log(&log);
    for acknowledged in [&first, &second] {
        assert!(logged.contains(&acknowledged.as_str()), "acknowledged {acknowledged} is in the log");
    }
    // the same log from every surviving node
    assert_eq!(c.log(&cc.base, &sid).await, log);
    // B took the session, and a survivor took it from B
    let (holder, token) = c.lease(&sid).await;
    assert!(token >= 2 && holder != "node-b", "lease: {holder} {token}");
    println!("takeover after kill -9 of the owner: the turn completed {:.2} s later", takeover.as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_that_lost_its_lease_cannot_append() {
    let Some(c) = Cluster::new().await else { return };
    let model = FakeModel::start().await;
    model.set_default_reply(Reply::text(FINAL));
    // the first request streams slowly: the node running it is paused meanwhile
    model.script(vec![Reply::text("written by the paused node").delay_ms(300).split(2)]);
    let x = c.node("node-x", &model, 1500);
    let y = c.node("node-y", &model, 1500);
    let sid = c.session(&y.base, json!([])).await;
    c.say(&x.base, &sid, "hello").await;
    // X runs the turn; wait until its model request is under way
    requested(&model).await;
    signal(&x, "STOP");
    // Y takes over once X's lease lapses, re-issues the request and finishes the turn
    c.wait_idle(&y.base, &sid, Duration::from_secs(30)).await;
    let before = c.log(&y.base, &sid).await;
    signal(&x, "CONT");
    // X wakes up with its old request's answer arriving: it must not write it
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = c.log(&y.base, &sid).await;
    assert_eq!(before, after, "the paused node appended after losing its lease");
    assert!(
        !after.iter().any(|e| e["type"] == "agent.message" && e["content"][0]["text"] == "written by the paused node"),
        "the paused node's answer is in the log"
    );
    check_log(&after);
    // Y closed the request X had in flight and asked again
    assert!(after.iter().any(|e| e["type"] == "span.model_request_end" && e["is_error"] == true), "no interrupted request was closed");
    assert!(model.requests().len() >= 2);
    assert_eq!(c.lease(&sid).await.0, "node-y");
    // X still serves the API, and hands commands for sessions it lost to their owner
    c.say(&x.base, &sid, "again").await;
    c.wait_idle(&y.base, &sid, Duration::from_secs(30)).await;
    check_log(&c.log(&x.base, &sid).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_sessions_over_without_waiting_for_the_lease() {
    let Some(c) = Cluster::new().await else { return };
    let model = FakeModel::start().await;
    model.set_default_reply(Reply::text(FINAL));
    model.script(vec![Reply::text("cut short").delay_ms(500).split(1)]);
    // a lease far longer than the hand-over may take
    let x = c.node("node-x", &model, 60_000);
    let y = c.node("node-y", &model, 60_000);
    let sid = c.session(&y.base, json!([])).await;
    c.say(&x.base, &sid, "hello").await;
    requested(&model).await;
    let stopped_at = Instant::now();
    signal(&x, "TERM");
    c.wait_idle(&y.base, &sid, Duration::from_secs(20)).await;
    // well inside the 60 s lease: the lease was handed over, not left to lapse
    let handed_over = stopped_at.elapsed();
    check_log(&c.log(&y.base, &sid).await);
    // taken by X, given up by X, taken by Y
    let (holder, token) = c.lease(&sid).await;
    assert!(holder == "node-y" && token >= 3, "lease: {holder} {token}");
    println!("SIGTERM hand-over: the turn completed on the other node {:.2} s later", handed_over.as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workspace_survives_the_death_of_its_node() {
    if !support::sandboxes_available() {
        return;
    }
    let Some(c) = Cluster::new().await else { return };
    let model = FakeModel::start().await;
    model.set_default_reply(Reply::text(FINAL));
    model.script(vec![
        Reply::tool_use("bash", json!({"command": "echo kept across nodes > /workspace/note.txt && sleep 300 &"})),
        Reply::text(FINAL),
        Reply::tool_use("bash", json!({"command": "cat /workspace/note.txt; pgrep -c sleep || true"})),
        Reply::text(FINAL),
    ]);
    let x = c.node("node-x", &model, 1500);
    let y = c.node("node-y", &model, 1500);
    let sid = c.session(&y.base, json!([{"type": "agent_toolset_20260401"}])).await;
    c.say(&x.base, &sid, "write it down").await;
    c.wait_idle(&x.base, &sid, Duration::from_secs(30)).await;
    assert_eq!(c.lease(&sid).await.0, "node-x");
    drop(x); // kill -9: its sandbox and its processes die with it
    c.say(&y.base, &sid, "what did you write?").await;
    c.wait_idle(&y.base, &sid, Duration::from_secs(30)).await;
    let log = c.log(&y.base, &sid).await;
    check_log(&log);
    let results: Vec<String> = log.iter().filter(|e| e["type"] == "agent.tool_result").map(|e| e["content"].to_string()).collect();
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(results[1].contains("kept across nodes"), "the file came along: {}", results[1]);
    assert!(results[1].contains("moved to another server"), "the model is told its processes are gone: {}", results[1]);
    assert_eq!(c.lease(&sid).await.0, "node-y");
}

/// The kill loop of `kill_loop.rs`, on three nodes: a random node is killed (`kill -9`) at
/// random moments and a new one started in its place, while sessions run tool-using turns
/// whose messages go to random nodes. Bounded by `OPENMA_CLUSTER_KILL_COUNT` (default 8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_nodes_killed_at_random() {
    use openma_core::{KeyStore, Store};
    let Some(c) = Cluster::new().await else { return };
    let kills: usize = std::env::var("OPENMA_CLUSTER_KILL_COUNT").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let model = FakeModel::start().await;
    model.set_default_reply(Reply::text(FINAL));
    model.script(support::kill_loop_script(FINAL));
    let mut nodes: Vec<ServerProcess> = (0..3).map(|i| c.node(&format!("n{i}-0"), &model, 1000)).collect();
    let agent = c.post(&nodes[0].base, "/v1/agents", json!({"name": "k", "model": "claude-sonnet-4-6", "tools": [{"type": "read"}]})).await;
    let mut sessions = Vec::new();
    for i in 0..3 {
        let s = c.post(&nodes[i].base, "/v1/sessions", json!({"agent": agent["id"]})).await;
        sessions.push(s["id"].as_str().unwrap().to_owned());
    }
    let mut rng = Lcg(0xc105);
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    for round in 0..kills {
        for sid in &sessions {
            let base = &nodes[rng.next(3) as usize].base;
            let body = json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": format!("round {round}")}]}]});
            if let Ok(r) = c.http.post(format!("{base}/v1/sessions/{sid}/events")).bearer_auth(KEY).json(&body).send().await
                && r.status().is_success()
                && let Ok(v) = r.json::<Value>().await
            {
                acknowledged.push((sid.clone(), v["data"][0]["id"].as_str().unwrap().to_owned()));
            }
        }
        tokio::time::sleep(Duration::from_millis(20 + rng.next(200))).await;
        let victim = rng.next(3) as usize;
        nodes[victim] = c.node(&format!("n{victim}-{}", round + 1), &model, 1000); // the old one is SIGKILLed as it drops
    }
    for sid in &sessions {
        c.wait_idle(&nodes[0].base, sid, Duration::from_secs(60)).await;
    }
    let store = openma_store_sql::PostgresStore::open(&c.db.url).await.unwrap();
    let tenant = store.find_tenant("default").await.unwrap().unwrap();
    for sid in &sessions {
        let log = store.list_events(&tenant.id, sid, &openma_core::ports::EventQuery { limit: 100_000, ..Default::default() }).await.unwrap();
        let seqs: Vec<i64> = log.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=log.len() as i64).collect::<Vec<_>>(), "{sid}: seq contiguous");
        let json: Vec<Value> = log.iter().map(|e| serde_json::to_value(&e.event).unwrap()).collect();
        check_log(&json);
        for (s, id) in acknowledged.iter().filter(|(s, _)| s == sid) {
            assert!(json.iter().any(|e| e["id"] == *id.as_str()), "{s}: acknowledged event {id} is missing");
        }
    }
    println!("{kills} node kills survived by {} sessions ({} messages acknowledged)", sessions.len(), acknowledged.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_reach_streams_on_other_nodes() {
    let Some(c) = Cluster::new().await else { return };
    let model = FakeModel::start().await;
    model.set_default_reply(Reply::text(FINAL).delay_ms(20).split(3));
    let a = c.node("node-a", &model, 2000);
    let b = c.node("node-b", &model, 2000);
    let sid = c.session(&a.base, json!([])).await;
    let mut stream = SseReader::connect(&c.http, &format!("{}/v1/sessions/{sid}/events/stream?event_deltas[]=agent.message", b.base), KEY, None).await;
    // B tells the others its stream wants previews (every 2 s while it is open)
    tokio::time::sleep(Duration::from_millis(2500)).await;
    c.say(&a.base, &sid, "hello").await;
    let seen = stream.until(|e| e.event == "agent.message").await;
    let message = seen.last().unwrap();
    let deltas: Vec<&support::Sse> = seen.iter().filter(|e| e.event == "event_delta").collect();
    assert!(!deltas.is_empty(), "no preview reached node B: {:?}", seen.iter().map(|e| &e.event).collect::<Vec<_>>());
    let text: String = deltas.iter().map(|d| d.data["delta"]["content"]["text"].as_str().unwrap_or_default()).collect();
    assert_eq!(text, FINAL, "the deltas add up to the message");
    assert!(deltas.iter().all(|d| d.data["event_id"] == message.data["id"]), "previews name the event they preview");
    assert!(seen.iter().any(|e| e.event == "event_start" && e.data["event"]["id"] == message.data["id"]));
    // a stream that did not ask for previews gets none
    let mut plain = SseReader::connect(&c.http, &format!("{}/v1/sessions/{sid}/events/stream", b.base), KEY, None).await;
    c.say(&a.base, &sid, "again").await;
    let seen = plain.until(|e| e.event == "agent.message" && e.data["id"] != message.data["id"]).await;
    assert!(seen.iter().all(|e| !e.event.starts_with("event_")));
}
