//! Model cards (BYOK) on SQLite and PostgreSQL: CRUD, validation, one default per tenant,
//! tenant isolation, keys that never come back out; and end to end against two fake
//! providers: a tenant's card routes its turns (key, base URL, headers) while a tenant
//! without cards keeps the server's own provider.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use openma_fake_model::{FakeModel, sha256_hex};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Backend, TestApp, spawn_app, spawn_app_with_model};

backend_stories!(
    model_card_lifecycle,
    model_cards_refuse_bad_fields,
    a_tenant_has_one_default_card_and_a_model_one_card,
    keys_never_appear_in_responses_or_the_database,
    other_tenants_cannot_reach_model_cards,
);

const KEY: &str = "sk-card-SECRET-key-do-not-leak-7781";

fn anthropic_card(name: &str, models: &[&str]) -> Value {
    json!({"name": name, "provider": "anthropic", "api_key": KEY, "models": models})
}

/// A request with its raw response body, so tests can look at the exact bytes.
async fn raw(app: &TestApp, key: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, String) {
    let mut req = app.http.request(method, format!("{}{path}", app.base)).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request sent");
    (resp.status(), resp.text().await.unwrap_or_default())
}

async fn model_card_lifecycle(app: TestApp) {
    let c = app
        .ok("/v1/model_cards", json!({"name": "gateway", "provider": "openai_compatible", "base_url": "http://127.0.0.1:9/v1", "api_key": KEY,
            "headers": {"X-Team": "blue"}, "models": ["llama3"], "metadata": {"env": "prod"}}))
        .await;
    let id = c["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("mdlc_"), "{c}");
    assert_eq!(c["type"], "model_card");
    assert_eq!(c["provider"], "openai_compatible");
    assert_eq!(c["headers"], json!({"x-team": "blue"}), "header names are kept lower-case");
    assert_eq!(c["models"], json!(["llama3"]));
    assert_eq!(c["is_default"], false);
    assert_eq!(c["api_key_hint"], "7781");
    assert!(c["archived_at"].is_null());
    assert_eq!(app.get(&format!("/v1/model_cards/{id}")).await.body, c);

    let u = app.ok(&format!("/v1/model_cards/{id}"), json!({"name": "gw", "models": ["llama3", "qwen"], "metadata": {"env": null, "k": "v"}})).await;
    assert_eq!((u["name"].as_str(), u["models"].clone(), u["metadata"].clone()), (Some("gw"), json!(["llama3", "qwen"]), json!({"k": "v"})));
    assert_eq!(u["api_key_hint"], "7781", "an omitted key is kept");
    assert_eq!(u["headers"], json!({"x-team": "blue"}), "omitted headers are kept");
    assert!(u["updated_at"].as_str() > c["updated_at"].as_str());
    let rekeyed = app.ok(&format!("/v1/model_cards/{id}"), json!({"api_key": "sk-another-key-0000-abcd", "headers": {}})).await;
    assert_eq!(rekeyed["api_key_hint"], "abcd");
    assert_eq!(rekeyed["headers"], json!({}));
    let noop = app.ok(&format!("/v1/model_cards/{id}"), json!({"name": "gw"})).await;
    assert_eq!(noop["updated_at"], rekeyed["updated_at"], "a no-op update changes nothing");

    let others = [app.ok("/v1/model_cards", anthropic_card("a", &["claude-a"])).await, app.ok("/v1/model_cards", anthropic_card("b", &["claude-b"])).await];
    let ids = app.collect_ids("/v1/model_cards?limit=1").await;
    assert_eq!(ids, vec![others[1]["id"].as_str().unwrap(), others[0]["id"].as_str().unwrap(), id.as_str()], "newest first, one per page");

    let archived = app.ok(&format!("/v1/model_cards/{id}/archive"), json!(null)).await;
    assert!(archived["archived_at"].is_string());
    assert!(archived["api_key_hint"].is_null(), "archiving purges the key");
    let tenant = app.platform.find_tenant("default").await.unwrap();
    assert_eq!(app.platform.store.get_model_card(&tenant.id, &id).await.unwrap().unwrap().sealed_key, None);
    assert_eq!(app.ok(&format!("/v1/model_cards/{id}/archive"), json!(null)).await, archived, "archiving twice is harmless");
    assert_eq!(app.collect_ids("/v1/model_cards").await.len(), 2, "archived cards are hidden");
    assert_eq!(app.collect_ids("/v1/model_cards?include_archived=true").await.len(), 3);
    let frozen = app.post(&format!("/v1/model_cards/{id}"), json!({"name": "x"})).await;
    assert_eq!(frozen.status, StatusCode::BAD_REQUEST);
    assert_eq!(frozen.error_type(), "invalid_request_error");

    let del = app.delete(&format!("/v1/model_cards/{id}")).await;
    assert_eq!(del.body, json!({"id": id, "type": "model_card_deleted"}));
    let gone = app.get(&format!("/v1/model_cards/{id}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.error_type(), "not_found_error");
    assert_eq!(app.delete(&format!("/v1/model_cards/{id}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/v1/model_cards/mdlc_nope").await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/v1/model_cards/not-an-id").await.status, StatusCode::NOT_FOUND);
}

async fn model_cards_refuse_bad_fields(app: TestApp) {
    let base = json!({"name": "n", "provider": "anthropic", "api_key": KEY, "models": ["m"]});
    let with = |patch: Value| {
        let mut b = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() { b.as_object_mut().unwrap().remove(k); } else { b[k] = v.clone(); }
        }
        b
    };
    let long_headers: serde_json::Map<String, Value> = (0..33).map(|i| (format!("x-h{i}"), json!("v"))).collect();
    for bad in [
        with(json!({"provider": "gemini"})),
        with(json!({"provider": "openai_compatible"})),
        with(json!({"provider": "anthropic_compatible"})),
        with(json!({"base_url": "ftp://example.com"})),
        with(json!({"base_url": "not a url"})),
        with(json!({"name": ""})),
        with(json!({"name": "x".repeat(256)})),
        with(json!({"api_key": ""})),
        with(json!({"api_key": "has a space"})),
        with(json!({"api_key": null})),
        with(json!({"models": []})),
        with(json!({"models": ["m", "m"]})),
        with(json!({"models": ["with space"]})),
        with(json!({"headers": {"Authorization": "Bearer x"}})),
        with(json!({"headers": {"X-Api-Key": "x"}})),
        with(json!({"headers": {"host": "evil.example"}})),
        with(json!({"headers": {"Content-Length": "1"}})),
        with(json!({"headers": {"Connection": "close"}})),
        with(json!({"headers": {"bad name": "x"}})),
        with(json!({"headers": {"x-ok": "line\r\nbreak"}})),
        with(json!({"headers": long_headers})),
        with(json!({"metadata": {"k": 1}})),
    ] {
        let r = app.post("/v1/model_cards", bad.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.body);
        assert_eq!(r.error_type(), "invalid_request_error");
        assert!(!r.body.to_string().contains(KEY), "an error echoed the key: {}", r.body);
    }
    // a default card may serve every model without listing any
    app.ok("/v1/model_cards", with(json!({"models": [], "is_default": true}))).await;
    let c = app.ok("/v1/model_cards", with(json!({"provider": "openai", "models": ["gpt-x"]}))).await;
    let id = c["id"].as_str().unwrap();
    assert!(c["base_url"].is_null(), "the public providers need no base URL");
    for bad in [json!({"models": []}), json!({"base_url": "mailto:x"}), json!({"headers": {"authorization": "x"}}), json!({"api_key": ""}), json!({"provider": "anthropic"})] {
        let r = app.post(&format!("/v1/model_cards/{id}"), bad.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.body);
    }
}

async fn a_tenant_has_one_default_card_and_a_model_one_card(app: TestApp) {
    let first = app.ok("/v1/model_cards", json!({"name": "d1", "provider": "anthropic", "api_key": KEY, "is_default": true})).await;
    let second = json!({"name": "d2", "provider": "openai", "api_key": KEY, "is_default": true});
    let dup = app.post("/v1/model_cards", second.clone()).await;
    assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.body);
    assert_eq!(dup.error_type(), "conflict_error");
    assert_eq!(dup.headers["x-should-retry"], "false");
    let plain = app.ok("/v1/model_cards", json!({"name": "p", "provider": "openai", "api_key": KEY, "models": ["gpt-x"]})).await;
    let pid = plain["id"].as_str().unwrap();
    assert_eq!(app.post(&format!("/v1/model_cards/{pid}"), json!({"is_default": true})).await.status, StatusCode::CONFLICT);
    // another tenant has a default of its own
    let other = app.other_tenant("other").await;
    let r = app.call(Method::POST, "/v1/model_cards", Some(&other), Some(second.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // the default moves once the first one gives it up (or is archived)
    let fid = first["id"].as_str().unwrap();
    app.ok(&format!("/v1/model_cards/{fid}"), json!({"is_default": false, "models": ["claude-x"]})).await;
    app.ok(&format!("/v1/model_cards/{pid}"), json!({"is_default": true})).await;
    app.ok(&format!("/v1/model_cards/{pid}/archive"), json!(null)).await;
    let new_default = app.ok("/v1/model_cards", second).await;
    // a model id is served by one card only
    let taken = app.post("/v1/model_cards", json!({"name": "t", "provider": "anthropic", "api_key": KEY, "models": ["claude-x"]})).await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.body);
    assert!(taken.body["error"]["message"].as_str().unwrap().contains(fid));
    let other_card = app.ok("/v1/model_cards", json!({"name": "t", "provider": "anthropic", "api_key": KEY, "models": ["claude-y"]})).await;
    let oid = other_card["id"].as_str().unwrap();
    assert_eq!(app.post(&format!("/v1/model_cards/{oid}"), json!({"models": ["claude-y", "claude-x"]})).await.status, StatusCode::CONFLICT);
    // the archived card (`gpt-x`) frees its models
    app.ok(&format!("/v1/model_cards/{oid}"), json!({"models": ["claude-y", "gpt-x"]})).await;
    // resolution: the card listing the model, else the default, else none
    let tenant = app.platform.find_tenant("default").await.unwrap().id;
    let resolved = async |model: &str| app.platform.resolve_model_card(&tenant, model).await.unwrap().map(|c| c.card.name);
    assert_eq!(resolved("claude-x").await.as_deref(), Some("d1"));
    assert_eq!(resolved("gpt-x").await.as_deref(), Some("t"));
    assert_eq!(resolved("anything-else").await.as_deref(), Some("d2"), "the default serves the rest");
    app.ok(&format!("/v1/model_cards/{}/archive", new_default["id"].as_str().unwrap()), json!(null)).await;
    assert_eq!(resolved("anything-else").await, None, "no default: the server's keys serve the rest");
}

async fn keys_never_appear_in_responses_or_the_database(app: TestApp) {
    let key = app.key.clone();
    let mut bodies = Vec::new();
    let mut call = async |method: Method, path: String, body: Option<Value>| {
        let (status, text) = raw(&app, &key, method, &path, body).await;
        assert!(status.is_success(), "{path}: {status} {text}");
        bodies.push(text.clone());
        serde_json::from_str::<Value>(&text).unwrap()
    };
    let c = call(Method::POST, "/v1/model_cards".into(), Some(json!({"name": "n", "provider": "anthropic_compatible", "base_url": "http://127.0.0.1:9", "api_key": KEY, "models": ["m"]}))).await;
    let id = c["id"].as_str().unwrap().to_owned();
    call(Method::GET, format!("/v1/model_cards/{id}"), None).await;
    call(Method::GET, "/v1/model_cards".into(), None).await;
    call(Method::POST, format!("/v1/model_cards/{id}"), Some(json!({"api_key": format!("{KEY}-2")}))).await;
    call(Method::GET, "/v1/model_cards?include_archived=true".into(), None).await;
    call(Method::POST, format!("/v1/model_cards/{id}/archive"), None).await;
    // a live card keeps its sealed key in the database
    call(Method::POST, "/v1/model_cards".into(), Some(json!({"name": "live", "provider": "anthropic", "api_key": KEY, "models": ["m2"]}))).await;
    for b in &bodies {
        assert!(!b.contains(KEY), "a key leaked into a response: {b}");
        assert!(!b.contains("v1."), "a sealed value leaked into a response: {b}");
    }
    if app.platform.store.describe().await.unwrap().starts_with("sqlite") {
        for entry in std::fs::read_dir(app.data_dir()).unwrap().flatten() {
            let bytes = std::fs::read(entry.path()).unwrap_or_default();
            assert!(!bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()), "plaintext key in {}", entry.path().display());
        }
    }
}

async fn other_tenants_cannot_reach_model_cards(app: TestApp) {
    let other = app.other_tenant("other").await;
    let c = app.ok("/v1/model_cards", anthropic_card("mine", &["claude-x"])).await;
    let id = c["id"].as_str().unwrap();
    for (m, path, body) in [
        (Method::GET, format!("/v1/model_cards/{id}"), None),
        (Method::POST, format!("/v1/model_cards/{id}"), Some(json!({"name": "x"}))),
        (Method::POST, format!("/v1/model_cards/{id}/archive"), None),
        (Method::DELETE, format!("/v1/model_cards/{id}"), None),
    ] {
        let r = app.call(m.clone(), &path, Some(&other), body).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{m} {path}: {}", r.body);
        assert_eq!(r.error_type(), "not_found_error");
    }
    let list = app.call(Method::GET, "/v1/model_cards", Some(&other), None).await;
    assert_eq!(list.body["data"], json!([]));
    // the other tenant may serve the same model with its own card
    let r = app.call(Method::POST, "/v1/model_cards", Some(&other), Some(anthropic_card("theirs", &["claude-x"]))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(app.get(&format!("/v1/model_cards/{id}")).await.body["name"], "mine", "untouched");
    assert!(app.call(Method::GET, "/v1/model_cards", None, None).await.status == StatusCode::UNAUTHORIZED);
}

// ---- end to end: which provider a turn reaches ------------------------------------------

macro_rules! e2e {
    ($($name:ident),* $(,)?) => {
        mod e2e_sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Backend::Sqlite).await } )*
        }
        mod e2e_postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Backend::Postgres).await } )*
        }
    };
}

e2e!(a_tenants_card_routes_its_turns_and_others_keep_the_server_provider, a_card_whose_key_cannot_be_opened_ends_the_turn_with_an_error);

/// The server's own provider key (see `support::spawn_app_with_model`).
const ENV_KEY: &str = "sk-ant-fake-test-key";

async fn session(app: &TestApp, key: &str, model: &str) -> String {
    let a = app.call(Method::POST, "/v1/agents", Some(key), Some(json!({"name": "a", "model": model}))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let s = app.call(Method::POST, "/v1/sessions", Some(key), Some(json!({"agent": a.body["id"]}))).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);
    s.body["id"].as_str().unwrap().to_owned()
}

/// Sends a message and waits (with a deadline) until the session stops running; returns
/// the raw bytes of its event list.
async fn turn(app: &TestApp, key: &str, sid: &str, text: &str) -> String {
    let before = app.call(Method::GET, &format!("/v1/sessions/{sid}/events?limit=1000"), Some(key), None).await.body["data"].as_array().unwrap().len();
    let msg = json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]});
    let r = app.call(Method::POST, &format!("/v1/sessions/{sid}/events"), Some(key), Some(msg)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, text) = raw(app, key, Method::GET, &format!("/v1/sessions/{sid}/events?limit=1000"), None).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let events: Value = serde_json::from_str(&text).unwrap();
        let new = &events["data"].as_array().unwrap()[before..];
        if new.iter().any(|e| e["type"] == "session.status_idle" || e["type"] == "session.status_terminated") {
            return text;
        }
        assert!(Instant::now() < deadline, "the turn did not settle: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_tenants_card_routes_its_turns_and_others_keep_the_server_provider(backend: Backend) {
    let env_model = FakeModel::start().await;
    let card_model = FakeModel::start().await;
    let Some(app) = spawn_app_with_model(backend, Some(env_model.base_url())).await else { return };
    let mut seen = Vec::new();
    let (status, card) = raw(&app, &app.key, Method::POST, "/v1/model_cards", Some(json!({
        "name": "gateway", "provider": "anthropic_compatible", "base_url": card_model.base_url(), "api_key": KEY,
        "headers": {"X-Gateway-Team": "blue"}, "models": ["claude-sonnet-4-6"]}))).await;
    assert_eq!(status, StatusCode::OK, "{card}");
    seen.push(card.clone());
    let card_id = serde_json::from_str::<Value>(&card).unwrap()["id"].as_str().unwrap().to_owned();
    let other = app.other_tenant("no-cards").await;

    // tenant A's turn reaches fake #2 with the card's key and header
    let sid = session(&app, &app.key, "claude-sonnet-4-6").await;
    seen.push(turn(&app, &app.key, &sid, "hello").await);
    let reqs = card_model.requests();
    assert_eq!(reqs.len(), 1, "the card's provider got the turn");
    assert_eq!(reqs[0].path, "/v1/messages");
    assert_eq!(reqs[0].credentials.get("x-api-key"), Some(&sha256_hex(KEY)), "the card's key was sent");
    assert_eq!(reqs[0].header("x-gateway-team"), Some("blue"));
    assert_eq!(reqs[0].body["model"], "claude-sonnet-4-6");
    assert!(env_model.requests().is_empty(), "the server's provider was not used");
    assert!(seen.last().unwrap().contains("\"agent.message\""), "the turn was answered");

    // a tenant without cards keeps the server's provider
    let other_sid = session(&app, &other, "claude-sonnet-4-6").await;
    seen.push(turn(&app, &other, &other_sid, "hi").await);
    let env_reqs = env_model.requests();
    assert_eq!(env_reqs.len(), 1);
    assert_eq!(env_reqs[0].credentials.get("x-api-key"), Some(&sha256_hex(ENV_KEY)));
    assert_eq!(env_reqs[0].header("x-gateway-team"), None);
    assert_eq!(card_model.requests().len(), 1);

    // a new key takes effect on the next request, without a restart
    let new_key = format!("{KEY}-rotated");
    let (status, updated) = raw(&app, &app.key, Method::POST, &format!("/v1/model_cards/{card_id}"), Some(json!({"api_key": new_key}))).await;
    assert_eq!(status, StatusCode::OK);
    seen.push(updated);
    seen.push(turn(&app, &app.key, &sid, "again").await);
    assert_eq!(card_model.requests()[1].credentials.get("x-api-key"), Some(&sha256_hex(&new_key)));

    // an OpenAI-compatible card: Chat Completions, bearer key, its own prefix dropped
    let (status, oai) = raw(&app, &app.key, Method::POST, "/v1/model_cards", Some(json!({
        "name": "oai", "provider": "openai_compatible", "base_url": format!("{}/v1", card_model.base_url()), "api_key": KEY, "models": ["openai/gpt-test"]}))).await;
    assert_eq!(status, StatusCode::OK, "{oai}");
    let oai_sid = session(&app, &app.key, "openai/gpt-test").await;
    seen.push(turn(&app, &app.key, &oai_sid, "hi").await);
    let last = card_model.requests().pop().unwrap();
    assert_eq!(last.path, "/v1/chat/completions");
    assert_eq!(last.credentials.get("authorization"), Some(&sha256_hex(KEY)));
    assert_eq!(last.body["model"], "gpt-test");

    // an archived card serves nothing: the server's provider takes over
    let (status, archived) = raw(&app, &app.key, Method::POST, &format!("/v1/model_cards/{card_id}/archive"), None).await;
    assert_eq!(status, StatusCode::OK);
    seen.push(archived);
    let env_before = env_model.requests().len();
    seen.push(turn(&app, &app.key, &sid, "after archive").await);
    assert_eq!(env_model.requests().len(), env_before + 1);
    assert_eq!(env_model.requests().last().unwrap().credentials.get("x-api-key"), Some(&sha256_hex(ENV_KEY)));

    // hygiene: no response, event log or database file holds a key
    for id in [&sid, &oai_sid] {
        seen.push(raw(&app, &app.key, Method::GET, &format!("/v1/sessions/{id}"), None).await.1);
    }
    seen.push(raw(&app, &app.key, Method::GET, "/v1/model_cards?include_archived=true", None).await.1);
    for text in &seen {
        assert!(!text.contains(KEY), "a key leaked: {text}");
    }
    if matches!(backend, Backend::Sqlite) {
        for entry in std::fs::read_dir(app.data_dir()).unwrap().flatten() {
            let bytes = std::fs::read(entry.path()).unwrap_or_default();
            assert!(!bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()), "plaintext key in {}", entry.path().display());
        }
    }
}

async fn a_card_whose_key_cannot_be_opened_ends_the_turn_with_an_error(backend: Backend) {
    let env_model = FakeModel::start().await;
    let card_model = FakeModel::start().await;
    let Some(app) = spawn_app_with_model(backend, Some(env_model.base_url())).await else { return };
    let make = |name: &str, model: &str| json!({"name": name, "provider": "anthropic_compatible", "base_url": card_model.base_url(), "api_key": KEY, "models": [model]});
    let a = app.ok("/v1/model_cards", make("a", "claude-a")).await;
    let b = app.ok("/v1/model_cards", make("b", "claude-b")).await;
    // card a gets card b's sealed key: bound to another row, it does not decrypt
    let tenant = app.platform.find_tenant("default").await.unwrap();
    let store = &app.platform.store;
    let mut broken = store.get_model_card(&tenant.id, a["id"].as_str().unwrap()).await.unwrap().unwrap();
    broken.sealed_key = store.get_model_card(&tenant.id, b["id"].as_str().unwrap()).await.unwrap().unwrap().sealed_key;
    let at = broken.card.updated_at;
    assert!(store.update_model_card(&tenant.id, &broken, at).await.unwrap());

    let sid = session(&app, &app.key, "claude-a").await;
    let events: Value = serde_json::from_str(&turn(&app, &app.key, &sid, "hi").await).unwrap();
    let error = events["data"].as_array().unwrap().iter().find(|e| e["type"] == "session.error").expect("a session.error");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains(a["id"].as_str().unwrap()) && message.contains("cannot be decrypted"), "{message}");
    assert!(!message.contains(KEY));
    assert!(card_model.requests().is_empty() && env_model.requests().is_empty(), "no provider was called");
    // the other card still works
    let ok = session(&app, &app.key, "claude-b").await;
    let text = turn(&app, &app.key, &ok, "hi").await;
    assert!(text.contains("\"agent.message\""), "{text}");
    assert_eq!(card_model.requests().len(), 1);
}

/// The real binary with its log captured at debug level: after a card-routed turn, the
/// key is in neither the log nor any file of the data dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_log_and_data_dir_never_hold_a_card_key() {
    use std::io::BufRead;
    openma_models::install_tls_provider();
    let env_model = FakeModel::start().await;
    let card_model = FakeModel::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let data = dir.path().join("data");
    let api_key = "sk-oma-cards-log-0123456789abcdef";
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_openma"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env_remove("PLATFORM_ROOT_SECRET")
        .env("RUST_LOG", "debug")
        .env("OPENMA_BOOTSTRAP_API_KEY", api_key)
        .env("ANTHROPIC_API_KEY", ENV_KEY)
        .env("ANTHROPIC_BASE_URL", env_model.base_url())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("openma starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line.trim().strip_prefix("openma listening on ").expect("ready line").to_owned();
    let http = reqwest::Client::new();
    let post = async |path: &str, body: Value| {
        let r = http.post(format!("{base}{path}")).bearer_auth(api_key).json(&body).send().await.unwrap();
        assert!(r.status().is_success());
        r.json::<Value>().await.unwrap()
    };
    post("/v1/model_cards", json!({"name": "c", "provider": "anthropic_compatible", "base_url": card_model.base_url(), "api_key": KEY, "models": ["claude-sonnet-4-6"]})).await;
    let agent = post("/v1/agents", json!({"name": "a", "model": "claude-sonnet-4-6"})).await;
    let s = post("/v1/sessions", json!({"agent": agent["id"]})).await;
    let sid = s["id"].as_str().unwrap();
    post(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}]})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let text = http.get(format!("{base}/v1/sessions/{sid}/events?limit=1000")).bearer_auth(api_key).send().await.unwrap().text().await.unwrap();
        if text.contains("session.status_idle") {
            break text;
        }
        assert!(Instant::now() < deadline, "the turn did not settle: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(card_model.requests().len(), 1, "the card served the turn");
    assert!(!events.contains(KEY));
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read(&log_path).unwrap();
    assert!(!log.is_empty(), "the log was captured");
    assert!(!log.windows(KEY.len()).any(|w| w == KEY.as_bytes()), "the key is in the server log");
    let mut files = vec![data.clone()];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        } else {
            let bytes = std::fs::read(&p).unwrap_or_default();
            assert!(!bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()), "plaintext key in {}", p.display());
        }
    }
}

/// A card-routed session's sandbox sees no card key: not in its environment, its
/// processes' environments, or any file it can reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_never_sees_a_card_key() {
    if openma_sandbox::Sandboxes::check().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must install bubblewrap");
        return;
    }
    let env_model = FakeModel::start().await;
    let card_model = FakeModel::start().await;
    let app = spawn_app_with_model(Backend::Sqlite, Some(env_model.base_url())).await.unwrap();
    app.ok("/v1/model_cards", json!({"name": "c", "provider": "anthropic_compatible", "base_url": card_model.base_url(), "api_key": KEY, "models": ["claude-sonnet-4-6"]})).await;
    let a = app.ok("/v1/agents", json!({"name": "coder", "model": "claude-sonnet-4-6", "tools": [{"type": "agent_toolset_20260401"}]})).await;
    let sid = app.ok("/v1/sessions", json!({"agent": a["id"]})).await["id"].as_str().unwrap().to_owned();
    // the pattern matches the key without spelling it, so the command itself holds no key
    let look = "env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; grep -rsoh 'sk-card-SECRET-ke[y][-a-z0-9]*' / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev --exclude-dir=usr 2>/dev/null; echo END";
    card_model.script(vec![openma_fake_model::Reply::tool_use("bash", json!({"command": look})), openma_fake_model::Reply::text("done")]);
    let log = turn(&app, &app.key, &sid, "look around").await;
    let events: Value = serde_json::from_str(&log).unwrap();
    let result = events["data"].as_array().unwrap().iter().find(|e| e["type"] == "agent.tool_result").expect("the bash call ran");
    let output = result["content"].to_string();
    assert!(output.contains("END"), "the command ran to the end: {output}");
    assert!(!output.contains("sk-card-SECRET"), "the sandbox saw the card key: {output}");
    assert!(!log.contains(KEY));
    assert_eq!(card_model.requests().len(), 2, "both model calls of the turn went to the card");
}
