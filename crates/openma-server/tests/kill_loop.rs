//! Kill loop: the real server is SIGKILLed at pseudo-random moments while sessions run
//! tool-using conversations, and restarted each time. Afterwards every session finished
//! its work, its log is contiguous and duplicate-free, every tool use has exactly one
//! result, and no acknowledged client event is missing. The count is bounded
//! (`OPENMA_KILL_LOOP_COUNT`, default 20).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use openma_fake_model::{FakeModel, Reply};
use serde_json::{Value, json};
use support::{Lcg, ServerProcess};

mod support;

const KEY: &str = "sk-oma-killloop-0123456789abcdefgh";
const FINAL: &str = "the final answer";

fn serve(dir: &Path, model: &str) -> ServerProcess {
    ServerProcess::start(
        dir,
        &[
            ("OPENMA_BOOTSTRAP_API_KEY", KEY),
            ("ANTHROPIC_API_KEY", "sk-ant-fake"),
            ("ANTHROPIC_BASE_URL", model),
            ("OPENMA_MODEL_RETRY_BASE_MS", "10"),
            ("OPENMA_MODEL_MAX_RETRIES", "50"),
        ],
    )
}


#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_repeated_kill_9() {
    openma_models::install_tls_provider();
    let kills: usize = std::env::var("OPENMA_KILL_LOOP_COUNT").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let model = FakeModel::start().await;
    model.set_default_reply(Reply::text(FINAL));
    // plenty of slow tool-using answers; whatever is left when the queue runs out, turns end with FINAL
    model.script(support::kill_loop_script(FINAL));
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    let dir = tmp.path().join("data");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut rng = Lcg(0x5eed);
    let mut acknowledged: BTreeMap<String, Vec<String>> = BTreeMap::new();

    let mut server = serve(&dir, &model.base_url());
    let agent: Value = http.post(format!("{}/v1/agents", server.base)).bearer_auth(KEY)
        .json(&json!({"name": "k", "model": "claude-sonnet-4-6", "tools": [{"type": "read"}]})).send().await.unwrap().json().await.unwrap();
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let s: Value = http.post(format!("{}/v1/sessions", server.base)).bearer_auth(KEY).json(&json!({"agent": agent["id"]})).send().await.unwrap().json().await.unwrap();
        sessions.push(s["id"].as_str().unwrap().to_owned());
    }
    for round in 0..kills {
        // send a message to each session; only a 2xx counts as acknowledged
        for sid in &sessions {
            let body = json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": format!("round {round}")}]}]});
            if let Ok(r) = http.post(format!("{}/v1/sessions/{sid}/events", server.base)).bearer_auth(KEY).json(&body).send().await
                && r.status().is_success()
                && let Ok(v) = r.json::<Value>().await
            {
                acknowledged.entry(sid.clone()).or_default().push(v["data"][0]["id"].as_str().unwrap().to_owned());
            }
        }
        tokio::time::sleep(Duration::from_millis(20 + rng.next(150))).await;
        drop(server); // SIGKILL
        server = serve(&dir, &model.base_url());
    }
    // let everything finish
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut all_idle = true;
        for sid in &sessions {
            let s: Value = http.get(format!("{}/v1/sessions/{sid}", server.base)).bearer_auth(KEY).send().await.unwrap().json().await.unwrap();
            all_idle &= s["status"] == "idle";
        }
        if all_idle {
            break;
        }
        assert!(Instant::now() < deadline, "sessions did not finish after the kill loop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server);

    let store = openma_store_sql::SqliteStore::open(&format!("sqlite://{}", dir.join("openma.db").display())).await.unwrap();
    use openma_core::{KeyStore, Store};
    let tenant = store.find_tenant("default").await.unwrap().unwrap();
    for sid in &sessions {
        let log = store.list_events(&tenant.id, sid, &openma_core::ports::EventQuery { limit: 100_000, ..Default::default() }).await.unwrap();
        let seqs: Vec<i64> = log.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=log.len() as i64).collect::<Vec<_>>(), "{sid}: seq contiguous");
        let ids: BTreeSet<&str> = log.iter().map(|e| e.event.id.as_str()).collect();
        assert_eq!(ids.len(), log.len(), "{sid}: no event id twice");
        for id in acknowledged.get(sid).into_iter().flatten() {
            assert!(ids.contains(id.as_str()), "{sid}: acknowledged event {id} is missing");
        }
        let json: Vec<Value> = log.iter().map(|e| serde_json::to_value(&e.event).unwrap()).collect();
        let uses: Vec<&str> = json.iter().filter(|e| e["type"] == "agent.tool_use").map(|e| e["id"].as_str().unwrap()).collect();
        for u in &uses {
            let n = json.iter().filter(|e| e["type"] == "agent.tool_result" && e["tool_use_id"] == *u).count();
            assert_eq!(n, 1, "{sid}: tool use {u} has {n} results");
        }
        let last_message = json.iter().rev().find(|e| e["type"] == "agent.message").expect("an answer");
        assert_eq!(last_message["content"][0]["text"], FINAL, "{sid}: the work finished");
        assert_eq!(json.last().unwrap()["type"], "session.status_idle");
        // the ledger counts exactly the tokens of the model requests that completed
        let reported = |field: &str| -> i64 {
            json.iter().filter(|e| e["type"] == "span.model_request_end" && e["is_error"] == false).map(|e| e["model_usage"][field].as_i64().unwrap_or(0)).sum()
        };
        let q = openma_core::ports::UsageQuery { group_by: vec![openma_core::ports::UsageGroup::Session, openma_core::ports::UsageGroup::Kind], from: None, to: None };
        let rows = openma_core::ports::LedgerStore::usage_report(&store, &tenant.id, &q).await.unwrap();
        let counted = |kind: &str| rows.iter().filter(|r| r.session_id.as_deref() == Some(sid.as_str()) && r.kind.as_deref() == Some(kind)).map(|r| r.quantity).sum::<i64>();
        assert_eq!(counted("input_tokens"), reported("input_tokens"), "{sid}: input tokens in the ledger");
        assert_eq!(counted("output_tokens"), reported("output_tokens"), "{sid}: output tokens in the ledger");
        assert!(reported("input_tokens") > 0);
    }
    // and no source is counted twice
    let ledger = openma_core::ports::LedgerStore::ledger_after(&store, &tenant.id, 0, i64::MAX, 1_000_000).await.unwrap();
    let sources: BTreeSet<(String, String)> = ledger.iter().map(|(_, l)| (l.source.clone(), l.kind.clone())).collect();
    assert_eq!(sources.len(), ledger.len(), "a ledger source appears twice");
    println!("{kills} kills survived by {} sessions", sessions.len());
}
