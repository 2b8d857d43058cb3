//! Model cards (BYOK) on SQLite and PostgreSQL: CRUD, validation, one default per tenant,
//! tenant isolation, keys that never come back out.

#[macro_use]
mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Backend, TestApp, spawn_app};

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
    app.ok("/v1/model_cards", second).await;
    // a model id is served by one card only
    let taken = app.post("/v1/model_cards", json!({"name": "t", "provider": "anthropic", "api_key": KEY, "models": ["claude-x"]})).await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.body);
    assert!(taken.body["error"]["message"].as_str().unwrap().contains(fid));
    let other_card = app.ok("/v1/model_cards", json!({"name": "t", "provider": "anthropic", "api_key": KEY, "models": ["claude-y"]})).await;
    let oid = other_card["id"].as_str().unwrap();
    assert_eq!(app.post(&format!("/v1/model_cards/{oid}"), json!({"models": ["claude-y", "claude-x"]})).await.status, StatusCode::CONFLICT);
    // the archived card (`gpt-x`) frees its models
    app.ok(&format!("/v1/model_cards/{oid}"), json!({"models": ["claude-y", "gpt-x"]})).await;
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
