//! Metering beyond tokens and running time: web searches, file storage, prices with
//! effective dates (deployment config and model cards), and the per-tenant limit on
//! sandboxes running at once. Each story runs on SQLite and on PostgreSQL.

mod support;

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use openma_fake_model::{FakeModel, Reply, ScriptUsage};
use openma_types::Timestamp;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Backend, SseReader, TestApp, settled, spawn_app_custom, tool_turn};

macro_rules! stories {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Backend::Postgres).await } )*
        }
    };
}

stories!(
    every_web_search_is_one_ledger_row_sourced_by_its_tool_use,
    deployment_prices_apply_from_their_moment_and_never_reprice_earlier_usage,
    a_model_cards_prices_price_the_requests_it_serves,
    file_storage_is_metered_once_per_file_and_hour,
    a_tenant_at_its_sandbox_limit_gets_429_for_a_turn_that_could_start_one,
);

fn user(text: &str) -> Value {
    json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]})
}

/// The ledger summed by `group` (`kind`, `session`, …), as `(key, quantity, amount)`.
async fn usage(app: &TestApp, query: &str) -> Vec<(String, i64, i64)> {
    let r = app.get(&format!("/v1/usage?{query}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let key = ["kind", "session_id", "model"].iter().find_map(|k| l[*k].as_str()).unwrap_or_default().to_owned();
            (key, l["quantity"].as_i64().unwrap(), l["amount_micros"].as_i64().unwrap())
        })
        .collect()
}

fn of<'a>(rows: &'a [(String, i64, i64)], key: &str) -> Option<&'a (String, i64, i64)> {
    rows.iter().find(|r| r.0 == key)
}

/// The sources of the default tenant's ledger rows of `kind` (through the store trait: the
/// export holds back rows for a settling window).
async fn sources(app: &TestApp, kind: &str) -> Vec<String> {
    let tenant = app.platform.find_tenant("default").await.unwrap();
    let rows = app.platform.store.ledger_after(&tenant.id, 0, i64::MAX, 10_000).await.unwrap();
    let mut s: Vec<String> = rows.into_iter().filter(|(_, e)| e.kind == kind).map(|(_, e)| e.source).collect();
    s.sort();
    s
}

fn now() -> Timestamp {
    Timestamp::from_micros(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64)
}

async fn search_site() -> String {
    let app = Router::new().route("/search", get(|| async { axum::Json(json!({"results": [{"title": "Otters", "url": "https://otters.example/", "content": "They hold hands."}]})) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn every_web_search_is_one_ledger_row_sourced_by_its_tool_use(backend: Backend) {
    let model = FakeModel::start().await;
    let site = search_site().await;
    let Some(app) = spawn_app_custom(backend, Some(model.base_url()), |o| o.search_url = Some(format!("{site}/search"))).await else { return };
    let a = app.ok("/v1/agents", json!({"name": "a", "model": "claude-sonnet-4-6", "tools": [{"type": "web_search"}, {"type": "web_fetch"}]})).await;
    let sid = app.ok("/v1/sessions", json!({"agent": a["id"]})).await["id"].as_str().unwrap().to_owned();
    let results = tool_turn(&app, &model, &sid, vec![("web_search", json!({"query": "otters"})), ("web_search", json!({"query": "more otters"})), ("web_fetch", json!({"url": "http://10.0.0.1/"}))]).await;
    assert_eq!(results.iter().map(|r| r.1).collect::<Vec<_>>(), [false, false, true], "{results:?}");
    let by_kind = usage(&app, "group_by=kind").await;
    // two searches at the default $10 per 1,000; the refused fetch is no search
    assert_eq!(of(&by_kind, "web_searches").map(|r| (r.1, r.2)), Some((2, 20_000)), "{by_kind:?}");
    // each row's source is its search's tool use
    let events = app.get(&format!("/v1/sessions/{sid}/events?limit=100")).await.body["data"].as_array().unwrap().clone();
    let mut uses: Vec<String> =
        events.iter().filter(|e| e["type"] == "agent.tool_use" && e["name"] == "web_search").map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    uses.sort();
    assert_eq!(sources(&app, "web_searches").await, uses);
}

fn write_config(app_dir: &std::path::Path, toml: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(app_dir).unwrap();
    let path = app_dir.join("openma.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

async fn turn_with_usage(app: &TestApp, model: &FakeModel, input_tokens: u64) -> String {
    let a = app.agent("priced").await;
    let sid = app.ok("/v1/sessions", json!({"agent": a["id"]})).await["id"].as_str().unwrap().to_owned();
    model.script(vec![Reply::text("ok").usage(ScriptUsage { input_tokens, output_tokens: 0, ..Default::default() })]);
    let mut stream = SseReader::open(app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    assert_eq!(app.post(&format!("/v1/sessions/{sid}/events"), user("go")).await.status, StatusCode::OK);
    stream.until(settled).await;
    sid
}

async fn deployment_prices_apply_from_their_moment_and_never_reprice_earlier_usage(backend: Backend) {
    let model = FakeModel::start().await;
    let cfg_dir = tempfile::tempdir().unwrap();
    // $6/MTok input from long ago; $9/MTok from a moment some seconds ahead
    let change = Timestamp::from_micros(now().as_micros() + 12_000_000);
    let config = write_config(cfg_dir.path(), &format!(
        "[[prices.models]]\nmodel = \"claude-sonnet-4-6\"\neffective_from = \"2020-01-01T00:00:00Z\"\ninput_per_mtok_micros = 6000000\noutput_per_mtok_micros = 0\n\n\
         [[prices.models]]\nmodel = \"claude-sonnet-4-6\"\neffective_from = \"{change}\"\ninput_per_mtok_micros = 9000000\noutput_per_mtok_micros = 0\n\n\
         [[prices.rates]]\nrate = \"runtime_per_hour\"\neffective_from = \"2020-01-01T00:00:00Z\"\nmicros = 0\n"
    ));
    let Some(app) = spawn_app_custom(backend, Some(model.base_url()), |o| o.config = Some(config)).await else { return };
    let before = turn_with_usage(&app, &model, 1_000_000).await;
    assert!(now() < change, "the first turn must end before the price change (a very slow start-up?)");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while now() <= change {
        assert!(std::time::Instant::now() < deadline, "the clock did not reach the price change");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = turn_with_usage(&app, &model, 1_000_000).await;
    let by_session = usage(&app, "group_by=session&group_by=kind").await;
    let r = app.get("/v1/usage?group_by=session&group_by=kind").await.body;
    let amount = |sid: &str, kind: &str| {
        r["data"].as_array().unwrap().iter().find(|l| l["session_id"] == sid && l["kind"] == kind).map(|l| l["amount_micros"].as_i64().unwrap())
    };
    assert_eq!(amount(&before, "input_tokens"), Some(6_000_000), "{by_session:?}");
    assert_eq!(amount(&after, "input_tokens"), Some(9_000_000), "{by_session:?}");
    assert_eq!(amount(&before, "runtime_ms"), Some(0), "the runtime rate was overridden to zero");

    // a price in the config that cannot be meant is refused at start-up
    let bad = write_config(&cfg_dir.path().join("bad"), "[[prices.rates]]\nrate = \"teleport_per_hour\"\neffective_from = \"2020-01-01T00:00:00Z\"\nmicros = 1\n");
    assert!(openma_server::config::Settings::resolve(openma_server::config::Overrides { config: Some(bad), ..Default::default() }).is_err());
}

const CARD_KEY: &str = "sk-card-metering-0123456789abcdef";

async fn a_model_cards_prices_price_the_requests_it_serves(backend: Backend) {
    let model = FakeModel::start().await;
    let Some(app) = spawn_app_custom(backend, Some(model.base_url()), |_| {}).await else { return };
    let card = |prices: Value| json!({"name": "gw", "provider": "anthropic_compatible", "base_url": model.base_url(), "api_key": CARD_KEY, "models": ["claude-sonnet-4-6"], "prices": prices});
    // invalid prices are refused with 400 in the error envelope
    for bad in [
        json!([{"input_per_mtok_micros": 1, "output_per_mtok_micros": 1, "surprise": true}]),
        json!([{"input_per_mtok_micros": 1, "output_per_mtok_micros": 1, "effective_from": "2020-01-01T00:00:00Z"}]),
        json!([{"input_per_mtok_micros": -1, "output_per_mtok_micros": 1}]),
        json!([{"input_per_mtok_micros": 1}]),
        json!({"input_per_mtok_micros": 1, "output_per_mtok_micros": 1}),
    ] {
        let r = app.post("/v1/model_cards", card(bad.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.body);
        assert_eq!(r.error_type(), "invalid_request_error");
    }
    // a card without prices shows none (the field is absent)
    let plain = app.ok("/v1/model_cards", json!({"name": "plain", "provider": "anthropic", "api_key": CARD_KEY, "models": ["claude-haiku-4-5"]})).await;
    assert!(plain.get("prices").is_none(), "{plain}");

    let c = app.ok("/v1/model_cards", card(json!([{"input_per_mtok_micros": 10_000_000, "output_per_mtok_micros": 0}]))).await;
    let id = c["id"].as_str().unwrap().to_owned();
    let in_effect = c["prices"][0].clone();
    assert!(in_effect["effective_from"].is_string(), "absent `effective_from` became now: {c}");
    let sid = turn_with_usage(&app, &model, 1_000).await;
    let r = app.get("/v1/usage?group_by=session&group_by=kind").await.body;
    let input = r["data"].as_array().unwrap().iter().find(|l| l["session_id"] == sid.as_str() && l["kind"] == "input_tokens").unwrap().clone();
    assert_eq!(input["amount_micros"], 10_000, "1,000 tokens at the card's $10/MTok: {input}");

    // the price in effect cannot be dropped or changed; a later one can be added
    let r = app.post(&format!("/v1/model_cards/{id}"), json!({"prices": [{"input_per_mtok_micros": 1, "output_per_mtok_micros": 1}]})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("in effect"), "{}", r.body);
    let later = json!({"input_per_mtok_micros": 1, "output_per_mtok_micros": 1, "effective_from": "2100-01-01T00:00:00Z"});
    let updated = app.ok(&format!("/v1/model_cards/{id}"), json!({"prices": [in_effect, later]})).await;
    assert_eq!(updated["prices"].as_array().unwrap().len(), 2, "{updated}");
}

async fn file_storage_is_metered_once_per_file_and_hour(backend: Backend) {
    let Some(app) = spawn_app_custom(backend, None, |_| {}).await else { return };
    let bytes = vec![7u8; 36_000];
    let file = app.upload("data.bin", "application/octet-stream", &bytes).await;
    let file_id = file["id"].as_str().unwrap().to_owned();
    let hour = 3_600_000_000;
    let this_hour = now().as_micros() / hour * hour;
    let next_hour_end = Timestamp::from_micros(this_hour + 2 * hour);
    // metered through the hour before this one (the server's own job may have said so already)
    app.platform.store.put_meta("file_storage_metered_until", &(this_hour - hour).to_string(), false).await.unwrap();
    // meter through the end of the next hour, as the per-minute job will once it has passed
    app.platform.meter_file_storage_until(next_hour_end).await.unwrap();
    let whole_hour = format!("group_by[]=kind&starting_at={next_hour_end}");
    let rows = usage(&app, &whole_hour).await;
    // a whole hour of 36,000 bytes is 36,000 byte-hours
    assert_eq!(of(&rows, "file_storage").map(|r| r.1), Some(36_000), "{rows:?}");
    let total = usage(&app, "group_by=kind").await;
    // metering the same hours again, even after losing the watermark, adds nothing
    assert_eq!(app.platform.meter_file_storage_until(next_hour_end).await.unwrap(), 0);
    app.platform.store.put_meta("file_storage_metered_until", &(this_hour - hour).to_string(), false).await.unwrap();
    assert_eq!(app.platform.meter_file_storage_until(next_hour_end).await.unwrap(), 0);
    assert_eq!(usage(&app, "group_by=kind").await, total);
    let sources = sources(&app, "file_storage").await;
    assert!(!sources.is_empty() && sources.iter().all(|s| s.starts_with(&format!("{file_id}:"))), "{sources:?}");
    // a deleted file is metered no more
    assert_eq!(app.delete(&format!("/v1/files/{file_id}")).await.status, StatusCode::OK);
    assert_eq!(app.platform.meter_file_storage_until(Timestamp::from_micros(this_hour + 3 * hour)).await.unwrap(), 0);
}

fn bwrap_available() -> bool {
    openma_sandbox::Sandboxes::check().is_ok()
}

async fn a_tenant_at_its_sandbox_limit_gets_429_for_a_turn_that_could_start_one(backend: Backend) {
    if !bwrap_available() {
        eprintln!("skipping: bubblewrap is not available");
        return;
    }
    let model = FakeModel::start().await;
    let Some(app) = spawn_app_custom(backend, Some(model.base_url()), |_| {}).await else { return };
    let tenant = app.platform.find_tenant("default").await.unwrap();
    let limits = |n: Option<i64>| openma_core::tenancy::TenantLimits { max_running_sandboxes: n, ..Default::default() };
    app.platform.set_tenant_limits(&tenant.id, &limits(Some(1))).await.unwrap();
    let coder = app.ok("/v1/agents", json!({"name": "coder", "model": "claude-sonnet-4-6", "tools": [{"type": "agent_toolset_20260401"}]})).await;
    let talker = app.agent("talker").await;
    let new_session = |agent: &Value| app.ok("/v1/sessions", json!({"agent": agent["id"]}));
    let s1 = new_session(&coder).await["id"].as_str().unwrap().to_owned();
    let s2 = new_session(&coder).await["id"].as_str().unwrap().to_owned();
    let s3 = new_session(&talker).await["id"].as_str().unwrap().to_owned();

    // s1 starts the tenant's one sandbox
    let r = tool_turn(&app, &model, &s1, vec![("bash", json!({"command": "echo started"}))]).await;
    assert!(r.len() == 1 && r[0].0.contains("started") && !r[0].1, "{r:?}");
    // s2 could start a second: its turn waits, with 429 in the error envelope and retry-after
    let busy = app.post(&format!("/v1/sessions/{s2}/events"), user("go")).await;
    assert_eq!(busy.status, StatusCode::TOO_MANY_REQUESTS, "{}", busy.body);
    assert_eq!(busy.error_type(), "rate_limit_error");
    assert!(busy.body["error"]["message"].as_str().unwrap().contains("sandboxes"), "{}", busy.body);
    assert!(busy.headers.get("retry-after").is_some());
    // the session that holds the sandbox, and one whose agent cannot start one, go on
    let r = tool_turn(&app, &model, &s1, vec![("bash", json!({"command": "echo again"}))]).await;
    assert!(r.len() == 1 && r[0].0.contains("again") && !r[0].1, "{r:?}");
    model.script(vec![Reply::text("hi")]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{s3}/events/stream"), None).await;
    assert_eq!(app.post(&format!("/v1/sessions/{s3}/events"), user("hi")).await.status, StatusCode::OK);
    stream.until(settled).await;

    // a turn admitted while there was room: its `bash` finds the seat gone and says so
    app.platform.set_tenant_limits(&tenant.id, &limits(None)).await.unwrap();
    model.script(vec![Reply::tool_use("bash", json!({"command": "echo second"})).delay_ms(300), Reply::text("done")]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{s2}/events/stream"), None).await;
    assert_eq!(app.post(&format!("/v1/sessions/{s2}/events"), user("go")).await.status, StatusCode::OK);
    // the limit comes back while the model is still answering (its frames come slowly)
    stream.until(|e| e.event == "span.model_request_start").await;
    app.platform.set_tenant_limits(&tenant.id, &limits(Some(1))).await.unwrap();
    let events = stream.until(settled).await;
    let result = events.iter().find(|e| e.event == "agent.tool_result").expect("a tool result");
    assert_eq!(result.data["is_error"], true, "{}", result.data);
    assert!(result.data.to_string().contains("sandboxes at once"), "{}", result.data);

    // with room again, s2 starts its own
    app.platform.set_tenant_limits(&tenant.id, &limits(Some(2))).await.unwrap();
    let r = tool_turn(&app, &model, &s2, vec![("bash", json!({"command": "echo second"}))]).await;
    assert!(r.len() == 1 && r[0].0.contains("second") && !r[0].1, "{r:?}");
}

#[test]
fn the_admin_command_sets_and_shows_the_sandbox_limit() {
    let dir = tempfile::tempdir().unwrap();
    let openma = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_openma")).arg("--data-dir").arg(dir.path()).args(args).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, _, err) = openma(&["tenants", "create", "acme"]);
    assert!(ok, "{err}");
    let (ok, out, err) = openma(&["tenants", "limits", "acme", "--max-running-sandboxes", "2"]);
    assert!(ok, "{err}");
    assert!(out.contains("running sandboxes 2"), "{out}");
    // other flags keep it; a negative count is refused
    let (ok, out, _) = openma(&["tenants", "limits", "acme", "--max-running-sessions", "5"]);
    assert!(ok && out.contains("running sessions 5, running sandboxes 2"), "{out}");
    let (ok, _, err) = openma(&["tenants", "limits", "acme", "--max-running-sandboxes=-1"]);
    assert!(!ok && err.contains("--max-running-sandboxes"), "{err}");
    let (ok, out, _) = openma(&["tenants", "limits", "acme", "--clear"]);
    assert!(ok && out.contains("running sandboxes unlimited"), "{out}");
}
