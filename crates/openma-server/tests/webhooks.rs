//! Outbound webhooks on SQLite and PostgreSQL: endpoint CRUD, validation and isolation;
//! deliveries to a local receiver, whose signatures are checked here with HMAC-SHA256
//! directly (not with the server's code); the ordered deliveries of a session turn; a
//! failing receiver gets exactly 3 attempts with one `webhook-id`; and a queued delivery
//! survives a restart of the server process.

#[macro_use]
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode as AxumStatus};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use openma_fake_model::FakeModel;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Backend, ServerProcess, TestApp, spawn_app, spawn_app_custom};

backend_stories!(endpoint_lifecycle, endpoints_refuse_bad_fields, other_tenants_cannot_reach_endpoints);

/// Stories that need a receiver on 127.0.0.1: the private-address switch and short back-offs.
macro_rules! delivery_stories {
    ($($name:ident),* $(,)?) => {
        mod sqlite_deliveries {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Backend::Sqlite).await } )*
        }
        mod postgres_deliveries {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Backend::Postgres).await } )*
        }
    };
}

delivery_stories!(
    a_session_turn_is_delivered_in_order_and_signed,
    updates_credentials_and_waiting_sessions_are_delivered,
    a_failing_receiver_gets_three_attempts_with_one_id,
    disabled_endpoints_and_unsubscribed_events_get_nothing,
);

async fn delivering_app(backend: Backend, model: &FakeModel) -> Option<TestApp> {
    spawn_app_custom(backend, Some(model.base_url()), |o| {
        o.unsafe_allow_private_fetch = true;
        o.webhook_retry_delays_ms = Some(vec![100, 200]);
    })
    .await
}

// ---- a local receiver ----------------------------------------------------------------

#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// A receiver answering `answers[n]` to the n-th request (the last one repeats).
    async fn start(answers: Vec<u16>) -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let (g, a) = (got.clone(), Arc::new(answers));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let (g, a) = (g.clone(), a.clone());
                async move {
                    let n = {
                        let mut got = g.lock().unwrap();
                        got.push(Received { headers, body });
                        got.len()
                    };
                    let code = a.get(n - 1).or(a.last()).copied().unwrap_or(200);
                    AxumStatus::from_u16(code).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, got }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (with a deadline) until at least `n` requests arrived.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "{} of {n} deliveries arrived: {got:?}", got.len());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Checks a delivery's Standard Webhooks signature with the endpoint's secret.
fn verify(secret: &str, r: &Received) {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").expect("whsec_ prefix")).expect("base64 secret");
    let (id, ts) = (r.header("webhook-id"), r.header("webhook-timestamp"));
    assert!(!id.is_empty() && ts.parse::<i64>().is_ok(), "{:?}", r.headers);
    let age = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 - ts.parse::<i64>().unwrap();
    assert!((-5..60).contains(&age), "the timestamp is the time of sending: {ts}");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{}", r.body).as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    assert!(r.header("webhook-signature").split(' ').any(|s| s == expected), "bad signature {:?} for {}", r.header("webhook-signature"), r.body);
    assert_eq!(r.json()["id"], id, "the webhook-id is the event id");
}

async fn deliveries(app: &TestApp, endpoint: &str) -> Vec<Value> {
    let r = app.get(&format!("/v1/organizations/webhooks/{endpoint}/deliveries?limit=100")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["data"].as_array().unwrap().clone()
}

/// Waits (with a deadline) until every delivery of the endpoint is settled as `status`.
async fn wait_log(app: &TestApp, endpoint: &str, n: usize, status: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = deliveries(app, endpoint).await;
        if log.len() >= n && log.iter().all(|d| d["status"] == status) {
            return log;
        }
        assert!(Instant::now() < deadline, "the log did not settle as {status}: {log:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_idle(app: &TestApp, sid: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = app.get(&format!("/v1/sessions/{sid}")).await;
        if s.body["status"] == "idle" {
            let events = app.get(&format!("/v1/sessions/{sid}/events?limit=1000")).await.body;
            if events["data"].as_array().unwrap().iter().any(|e| e["type"] == "session.status_idle") {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the session did not go idle: {}", s.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- endpoints -----------------------------------------------------------------------

async fn endpoint_lifecycle(app: TestApp) {
    let created = app
        .ok("/v1/organizations/webhooks", json!({"url": "https://hooks.example.com/a", "enabled_events": ["session.created", "external_key.failed"], "name": "ops"}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("whep_"), "{created}");
    let secret = created["signing_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_") && STANDARD.decode(&secret[6..]).unwrap().len() == 32, "{secret}");
    assert_eq!((created["state"].as_str(), created["name"].as_str(), created["description"].as_str()), (Some("enabled"), Some("ops"), Some("")));
    assert_eq!(created["disabled_reason"], "");
    assert_eq!(created["enabled_events"], json!(["session.created", "external_key.failed"]));

    let got = app.get(&format!("/v1/organizations/webhooks/{id}")).await.body;
    assert!(got.get("signing_secret").is_none(), "retrieve never shows the secret: {got}");
    let mut without = created.clone();
    without.as_object_mut().unwrap().remove("signing_secret");
    assert_eq!(got, without);

    let updated = app
        .ok(&format!("/v1/organizations/webhooks/{id}"), json!({"state": "disabled", "description": "d", "enabled_events": [], "url": "https://hooks.example.com/b"}))
        .await;
    assert_eq!((updated["state"].as_str(), updated["description"].as_str(), updated["url"].as_str()), (Some("disabled"), Some("d"), Some("https://hooks.example.com/b")));
    assert_eq!(updated["enabled_events"], created["enabled_events"], "an empty list leaves the set unchanged");
    assert!(updated["updated_at"].as_str() > created["updated_at"].as_str());
    assert!(updated.get("signing_secret").is_none());

    let fresh = app.ok(&format!("/v1/organizations/webhooks/{id}/regenerate_signing_secret"), json!(null)).await;
    let new_secret = fresh["signing_secret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret, "{fresh}");
    assert_eq!(fresh.as_object().unwrap().len(), 1);

    // `Page` paging: newest first, after_id / before_id, has_more, first_id / last_id
    let mut ids = vec![id.clone()];
    for n in 0..3 {
        let e = app.ok("/v1/organizations/webhooks", json!({"url": format!("https://hooks.example.com/{n}"), "enabled_events": ["agent.created"]})).await;
        ids.push(e["id"].as_str().unwrap().to_owned());
    }
    ids.reverse();
    let p1 = app.get("/v1/organizations/webhooks?limit=2").await.body;
    let page_ids = |p: &Value| p["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(page_ids(&p1), ids[..2]);
    assert_eq!((p1["has_more"].as_bool(), p1["first_id"].as_str(), p1["last_id"].as_str()), (Some(true), Some(ids[0].as_str()), Some(ids[1].as_str())));
    assert!(p1["data"][0].get("signing_secret").is_none());
    let p2 = app.get(&format!("/v1/organizations/webhooks?limit=2&after_id={}", ids[1])).await.body;
    assert_eq!(page_ids(&p2), ids[2..]);
    assert_eq!(p2["has_more"], false);
    let before = app.get(&format!("/v1/organizations/webhooks?limit=2&before_id={}", ids[3])).await.body;
    assert_eq!(page_ids(&before), ids[..2], "the first `limit` endpoints before the cursor");
    assert_eq!(before["has_more"], true);
    let asc = app.get("/v1/organizations/webhooks?order=asc&limit=0").await.body;
    assert_eq!(page_ids(&asc), ids.iter().rev().cloned().collect::<Vec<_>>());

    let deleted = app.delete(&format!("/v1/organizations/webhooks/{id}")).await;
    assert_eq!(deleted.body, json!({"id": id, "type": "webhook_endpoint_deleted"}));
    assert_eq!(app.get(&format!("/v1/organizations/webhooks/{id}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.delete(&format!("/v1/organizations/webhooks/{id}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&format!("/v1/organizations/webhooks/{id}/deliveries")).await.status, StatusCode::NOT_FOUND);

    let doc = app.call(Method::GET, "/v1/openapi.json", None, None).await.body;
    for (path, methods) in [
        ("/v1/organizations/webhooks", &["get", "post"][..]),
        ("/v1/organizations/webhooks/{webhook_endpoint_id}", &["get", "post", "delete"][..]),
        ("/v1/organizations/webhooks/{webhook_endpoint_id}/regenerate_signing_secret", &["post"][..]),
        ("/v1/organizations/webhooks/{webhook_endpoint_id}/deliveries", &["get"][..]),
    ] {
        for m in methods {
            assert!(doc["paths"][path][m].is_object(), "openapi misses {m} {path}");
        }
    }
}

async fn endpoints_refuse_bad_fields(app: TestApp) {
    let bad = [
        json!({"url": "https://hooks.example.com/a", "enabled_events": []}),
        json!({"url": "https://hooks.example.com/a", "enabled_events": ["session.exploded"]}),
        json!({"url": "ftp://hooks.example.com/a", "enabled_events": ["session.created"]}),
        json!({"url": "not a url", "enabled_events": ["session.created"]}),
        json!({"url": "https://hooks.example.com/a"}),
        // without the test-only private-address switch, plainly private destinations are refused
        json!({"url": "http://127.0.0.1:9/hook", "enabled_events": ["session.created"]}),
        json!({"url": "http://localhost/hook", "enabled_events": ["session.created"]}),
        json!({"url": "http://169.254.169.254/latest", "enabled_events": ["session.created"]}),
        json!({"url": "https://hooks.example.com/a", "enabled_events": ["session.created"], "name": "n".repeat(300)}),
    ];
    for body in bad {
        let r = app.post("/v1/organizations/webhooks", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        assert_eq!(r.error_type(), "invalid_request_error");
    }
    // a type of the payload table this server never sends is refused, not accepted and left silent
    let planned = app.post("/v1/organizations/webhooks", json!({"url": "https://hooks.example.com/a", "enabled_events": ["session.thread_created"]})).await;
    assert_eq!(planned.status, StatusCode::BAD_REQUEST, "{}", planned.body);
    assert_eq!(planned.body["error"]["details"]["error_code"], "unsupported_feature");
    let e = app.ok("/v1/organizations/webhooks", json!({"url": "https://hooks.example.com/a", "enabled_events": ["vault.created"]})).await;
    let id = e["id"].as_str().unwrap();
    for body in [json!({"enabled_events": ["nope"]}), json!({"url": "http://10.1.2.3/"}), json!({"state": "paused"})] {
        let r = app.post(&format!("/v1/organizations/webhooks/{id}"), body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
    }
    for q in ["limit=101", "limit=-1", "after_id=whep_nothing", "after_id=x&before_id=y"] {
        assert_eq!(app.get(&format!("/v1/organizations/webhooks?{q}")).await.status, StatusCode::BAD_REQUEST, "{q}");
    }
}

async fn other_tenants_cannot_reach_endpoints(app: TestApp) {
    let e = app.ok("/v1/organizations/webhooks", json!({"url": "https://hooks.example.com/a", "enabled_events": ["session.created"]})).await;
    let id = e["id"].as_str().unwrap();
    let other = app.other_tenant("intruder").await;
    for (method, path) in [
        (Method::GET, format!("/v1/organizations/webhooks/{id}")),
        (Method::POST, format!("/v1/organizations/webhooks/{id}")),
        (Method::POST, format!("/v1/organizations/webhooks/{id}/regenerate_signing_secret")),
        (Method::GET, format!("/v1/organizations/webhooks/{id}/deliveries")),
        (Method::DELETE, format!("/v1/organizations/webhooks/{id}")),
    ] {
        let body = (method == Method::POST).then(|| json!({"name": "mine"}));
        let r = app.call(method.clone(), &path, Some(&other), body).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {path}: {}", r.body);
    }
    let theirs = app.call(Method::GET, "/v1/organizations/webhooks", Some(&other), None).await;
    assert_eq!(theirs.body["data"], json!([]));
    assert_eq!(app.get(&format!("/v1/organizations/webhooks/{id}")).await.body["name"], "", "untouched");
    let tenant = app.platform.find_tenant("default").await.unwrap();
    let stored = app.platform.store.get_webhook_endpoint(&tenant.id, id).await.unwrap().unwrap();
    assert!(!stored.sealed_secret.contains("whsec_"), "the secret is sealed at rest");
}

// ---- deliveries ----------------------------------------------------------------------

async fn a_session_turn_is_delivered_in_order_and_signed(backend: Backend) {
    let model = FakeModel::start().await;
    let Some(app) = delivering_app(backend, &model).await else { return };
    let receiver = Receiver::start(vec![200]).await;
    let events = [
        "agent.created",
        "session.created",
        "session.status_run_started",
        "session.status_idled",
        "session.status_terminated",
        "session.archived",
        "session.deleted",
    ];
    let e = app.ok("/v1/organizations/webhooks", json!({"url": receiver.url, "enabled_events": events})).await;
    let (endpoint, secret) = (e["id"].as_str().unwrap().to_owned(), e["signing_secret"].as_str().unwrap().to_owned());
    let tenant = app.platform.find_tenant("default").await.unwrap();

    let agent = app.agent("hooked").await;
    let s = app.ok("/v1/sessions", json!({"agent": agent["id"]})).await;
    let sid = s["id"].as_str().unwrap().to_owned();
    let msg = json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}]});
    app.ok(&format!("/v1/sessions/{sid}/events"), msg).await;
    wait_idle(&app, &sid).await;
    // the idle status is queued right after it is stored: let it arrive before archiving
    receiver.wait_for(4).await;
    app.ok(&format!("/v1/sessions/{sid}/archive"), json!(null)).await;
    assert_eq!(app.delete(&format!("/v1/sessions/{sid}")).await.status, StatusCode::OK);

    let got = receiver.wait_for(events.len()).await;
    let mut bodies: Vec<Value> = got.iter().map(Received::json).collect();
    bodies.sort_by(|a, b| (a["created_at"].as_str(), a["id"].as_str()).cmp(&(b["created_at"].as_str(), b["id"].as_str())));
    let kinds: Vec<&str> = bodies.iter().map(|b| b["data"]["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, events, "one delivery per happening, in order");
    for r in &got {
        verify(&secret, r);
        assert_eq!(r.header("content-type"), "application/json");
    }
    for b in &bodies {
        assert_eq!(b["type"], "event");
        assert!(b["id"].as_str().unwrap().starts_with("wevt_"));
        assert_eq!(b["data"]["organization_id"], tenant.id.as_str());
        assert_eq!(b["data"]["workspace_id"], tenant.id.as_str());
        let expected = if b["data"]["type"] == "agent.created" { agent["id"].as_str().unwrap() } else { sid.as_str() };
        assert_eq!(b["data"]["id"], expected, "{b}");
        assert_eq!(b["data"].as_object().unwrap().len(), 4, "data carries only ids: {b}");
    }

    let log = wait_log(&app, &endpoint, events.len(), "delivered").await;
    assert_eq!(log.len(), events.len());
    for d in &log {
        assert_eq!((d["type"].as_str(), d["attempts"].as_i64(), d["last_response_status"].as_i64()), (Some("webhook_delivery"), Some(1), Some(200)), "{d}");
        assert!(d["next_attempt_at"].is_null() && d["last_error"].is_null(), "{d}");
        assert!(got.iter().any(|r| r.header("webhook-id") == d["event_id"]), "{d}");
    }
    assert_eq!(receiver.received().len(), events.len(), "nothing is sent twice");

    // a regenerated secret signs the next deliveries
    let fresh = app.ok(&format!("/v1/organizations/webhooks/{endpoint}/regenerate_signing_secret"), json!(null)).await;
    app.agent("after").await;
    let next = receiver.wait_for(events.len() + 1).await;
    verify(fresh["signing_secret"].as_str().unwrap(), next.last().unwrap());
}

/// The payload table's other types: updates, vault credentials (with their `vault_id`),
/// the shorter session status names and a turn that waits for a confirmation.
async fn updates_credentials_and_waiting_sessions_are_delivered(backend: Backend) {
    let model = FakeModel::start().await;
    let Some(app) = delivering_app(backend, &model).await else { return };
    let receiver = Receiver::start(vec![200]).await;
    let events = [
        "agent.updated",
        "environment.updated",
        "session.updated",
        "session.running",
        "session.idled",
        "session.requires_action",
        "vault_credential.created",
        "vault_credential.archived",
        "vault_credential.deleted",
    ];
    let e = app.ok("/v1/organizations/webhooks", json!({"url": receiver.url, "enabled_events": events})).await;
    let secret = e["signing_secret"].as_str().unwrap().to_owned();

    let agent = app
        .ok("/v1/agents", json!({"name": "asks", "model": "claude-sonnet-4-6",
            "tools": [{"type": "custom", "name": "lookup", "description": "Looks up.", "input_schema": {"type": "object", "properties": {}}}]}))
        .await;
    let aid = agent["id"].as_str().unwrap().to_owned();
    app.ok(&format!("/v1/agents/{aid}"), json!({"description": "changed"})).await;
    let env = app.ok("/v1/environments", json!({"name": "e"})).await;
    let eid = env["id"].as_str().unwrap().to_owned();
    app.ok(&format!("/v1/environments/{eid}"), json!({"description": "changed"})).await;
    let sid = app.ok("/v1/sessions", json!({"agent": aid, "environment_id": eid})).await["id"].as_str().unwrap().to_owned();
    app.ok(&format!("/v1/sessions/{sid}"), json!({"title": "renamed"})).await;
    model.script(vec![openma_fake_model::Reply::tool_use("lookup", json!({}))]);
    app.ok(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}]})).await;
    wait_idle(&app, &sid).await;
    let vault = app.ok("/v1/vaults", json!({"display_name": "v"})).await["id"].as_str().unwrap().to_owned();
    let cred = app
        .ok(&format!("/v1/vaults/{vault}/credentials"), json!({"auth": {"type": "static_bearer", "mcp_server_url": "https://mcp.example.com/mcp", "token": "t0ken"}}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.ok(&format!("/v1/vaults/{vault}/credentials/{cred}/archive"), json!(null)).await;
    assert_eq!(app.delete(&format!("/v1/vaults/{vault}/credentials/{cred}")).await.status, StatusCode::OK);

    let got = receiver.wait_for(events.len()).await;
    let mut kinds: Vec<String> = got.iter().map(|r| r.json()["data"]["type"].as_str().unwrap().to_owned()).collect();
    kinds.sort();
    let mut want: Vec<String> = events.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(kinds, want, "each subscribed happening once");
    for r in &got {
        verify(&secret, r);
        let data = r.json()["data"].clone();
        let kind = data["type"].as_str().unwrap();
        let expected = match kind.split('.').next().unwrap() {
            "agent" => aid.as_str(),
            "environment" => eid.as_str(),
            "session" => sid.as_str(),
            _ => cred.as_str(),
        };
        assert_eq!(data["id"], expected, "{data}");
        if kind.starts_with("vault_credential.") {
            assert_eq!(data["vault_id"], vault.as_str(), "{data}");
        } else {
            assert!(data.get("vault_id").is_none(), "{data}");
        }
    }
    // what is not delivered cannot be subscribed to
    let r = app.post("/v1/organizations/webhooks", json!({"url": receiver.url, "enabled_events": ["session.thread_created"]})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
}

async fn a_failing_receiver_gets_three_attempts_with_one_id(backend: Backend) {
    let model = FakeModel::start().await;
    let Some(app) = delivering_app(backend, &model).await else { return };
    let receiver = Receiver::start(vec![500]).await;
    let e = app.ok("/v1/organizations/webhooks", json!({"url": receiver.url, "enabled_events": ["environment.created"]})).await;
    let endpoint = e["id"].as_str().unwrap().to_owned();
    app.ok("/v1/environments", json!({"name": "env-hooked", "config": {"type": "cloud"}})).await;

    let log = wait_log(&app, &endpoint, 1, "failed").await;
    assert_eq!(log.len(), 1);
    assert_eq!((log[0]["attempts"].as_i64(), log[0]["last_response_status"].as_i64()), (Some(3), Some(500)), "{}", log[0]);
    assert!(log[0]["last_error"].as_str().is_some_and(|m| m.contains("500")), "{}", log[0]);
    let got = receiver.received();
    assert_eq!(got.len(), 3, "exactly three attempts: {got:?}");
    let id = got[0].header("webhook-id").to_owned();
    assert!(got.iter().all(|r| r.header("webhook-id") == id), "every attempt carries the same webhook-id");
    assert!(got.iter().all(|r| r.body == got[0].body), "every attempt sends the same body");
    assert_eq!(log[0]["event_id"], id.as_str());
}

async fn disabled_endpoints_and_unsubscribed_events_get_nothing(backend: Backend) {
    let model = FakeModel::start().await;
    let Some(app) = delivering_app(backend, &model).await else { return };
    let receiver = Receiver::start(vec![200]).await;
    let vaults = app.ok("/v1/organizations/webhooks", json!({"url": receiver.url, "enabled_events": ["vault.created", "vault.archived", "vault.deleted"]})).await;
    let off = app.ok("/v1/organizations/webhooks", json!({"url": receiver.url, "enabled_events": ["vault.created"]})).await;
    let off_id = off["id"].as_str().unwrap();
    app.ok(&format!("/v1/organizations/webhooks/{off_id}"), json!({"state": "disabled"})).await;
    let stores = app.ok("/v1/organizations/webhooks", json!({"url": receiver.url, "enabled_events": ["memory_store.created", "memory_store.archived", "memory_store.deleted"]})).await;

    app.agent("not subscribed").await;
    let v = app.ok("/v1/vaults", json!({"display_name": "v"})).await;
    let vid = v["id"].as_str().unwrap();
    app.ok(&format!("/v1/vaults/{vid}/archive"), json!(null)).await;
    assert_eq!(app.delete(&format!("/v1/vaults/{vid}")).await.status, StatusCode::OK);
    let m = app.ok("/v1/memory_stores", json!({"name": "notes"})).await;
    let mid = m["id"].as_str().unwrap();
    app.ok(&format!("/v1/memory_stores/{mid}/archive"), json!(null)).await;
    assert_eq!(app.delete(&format!("/v1/memory_stores/{mid}")).await.status, StatusCode::OK);

    let v_log = wait_log(&app, vaults["id"].as_str().unwrap(), 3, "delivered").await;
    let m_log = wait_log(&app, stores["id"].as_str().unwrap(), 3, "delivered").await;
    let kinds = |log: &[Value]| {
        let mut k: Vec<String> = log.iter().map(|d| d["event_type"].as_str().unwrap().to_owned()).collect();
        k.sort();
        k
    };
    assert_eq!(kinds(&v_log), ["vault.archived", "vault.created", "vault.deleted"]);
    assert_eq!(kinds(&m_log), ["memory_store.archived", "memory_store.created", "memory_store.deleted"]);
    assert!(deliveries(&app, off_id).await.is_empty(), "a disabled endpoint gets nothing queued");
    let got = receiver.wait_for(6).await;
    assert_eq!(got.len(), 6, "no delivery for the unsubscribed agent.created nor the disabled endpoint");
    assert!(got.iter().all(|r| r.json()["data"]["id"] == vid || r.json()["data"]["id"] == mid));
}

// ---- restarts ------------------------------------------------------------------------

const KEY: &str = "sk-oma-webhooks-0123456789abcdef";

async fn call(http: &reqwest::Client, method: Method, url: String, body: Option<Value>) -> Value {
    let mut r = http.request(method, url).bearer_auth(KEY);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.expect("request");
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "{status}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_delivery_survives_a_restart_and_keeps_its_id() {
    openma_models::install_tls_provider();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    // the first attempt fails, so the delivery waits in the queue for its retry
    let receiver = Receiver::start(vec![500, 200]).await;
    let env = [("OPENMA_BOOTSTRAP_API_KEY", KEY), ("OPENMA_UNSAFE_ALLOW_PRIVATE_ADDRESSES", "1")];
    let first = ServerProcess::start(dir.path(), &env);
    let e = call(&http, Method::POST, format!("{}/v1/organizations/webhooks", first.base), Some(json!({"url": receiver.url, "enabled_events": ["agent.created"]}))).await;
    let (endpoint, secret) = (e["id"].as_str().unwrap().to_owned(), e["signing_secret"].as_str().unwrap().to_owned());
    call(&http, Method::POST, format!("{}/v1/agents", first.base), Some(json!({"name": "a", "model": "claude-sonnet-4-6"}))).await;
    receiver.wait_for(1).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let log_url = |base: &str| format!("{base}/v1/organizations/webhooks/{endpoint}/deliveries");
    loop {
        let log = call(&http, Method::GET, log_url(&first.base), None).await;
        if log["data"][0]["last_response_status"] == 500 {
            assert_eq!((log["data"][0]["status"].as_str(), log["data"][0]["attempts"].as_i64()), (Some("pending"), Some(1)));
            break;
        }
        assert!(Instant::now() < deadline, "the first attempt was not recorded: {log}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    drop(first);

    let second = ServerProcess::start(dir.path(), &env);
    let got = receiver.wait_for(2).await;
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"), "the retry after the restart is the same message");
    verify(&secret, &got[1]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = call(&http, Method::GET, log_url(&second.base), None).await;
        if log["data"][0]["status"] == "delivered" {
            assert_eq!(log["data"][0]["attempts"], 2, "{log}");
            break;
        }
        assert!(Instant::now() < deadline, "not delivered after the restart: {log}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(receiver.received().len(), 2, "delivered once after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_to_private_addresses_are_never_attempted_without_the_switch() {
    let Some(app) = spawn_app_custom(Backend::Sqlite, None, |o| o.webhook_retry_delays_ms = Some(vec![50, 50])).await else { return };
    let receiver = Receiver::start(vec![200]).await;
    // the API refuses such a URL (see `endpoints_refuse_bad_fields`); a name that resolves to
    // loopback would pass it, so the worker checks again: an endpoint made past the API's
    // check stands for one
    let tenant = app.platform.find_tenant("default").await.unwrap();
    let req = openma_types::webhooks::CreateWebhookEndpointRequest {
        enabled_events: vec!["agent.created".into()],
        url: receiver.url.clone(),
        description: None,
        name: None,
    };
    let endpoint = app.platform.create_webhook_endpoint(&tenant.id, &req).await.unwrap().endpoint.id;
    app.agent("a").await;
    let log = wait_log(&app, &endpoint, 1, "failed").await;
    assert_eq!(log[0]["attempts"], 3, "{log:?}");
    assert!(log[0]["last_response_status"].is_null(), "{log:?}");
    assert!(log[0]["last_error"].as_str().is_some_and(|e| e.contains("non-public")), "{log:?}");
    assert!(receiver.received().is_empty(), "nothing reached the loopback receiver");
}

/// Rotation re-seals signing secrets: after the old root is gone, deliveries are still
/// signed with the secret the endpoint was created with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_reseals_signing_secrets() {
    openma_models::install_tls_provider();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let receiver = Receiver::start(vec![200]).await;
    let env = [("OPENMA_BOOTSTRAP_API_KEY", KEY), ("OPENMA_UNSAFE_ALLOW_PRIVATE_ADDRESSES", "1")];
    let secret = {
        let server = ServerProcess::start(dir.path(), &env);
        let e = call(&http, Method::POST, format!("{}/v1/organizations/webhooks", server.base), Some(json!({"url": receiver.url, "enabled_events": ["agent.created"]}))).await;
        e["signing_secret"].as_str().unwrap().to_owned()
    };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_openma"))
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("PLATFORM_ROOT_SECRET")
        .env("RUST_LOG", "warn")
        .args(["secrets", "rotate"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let server = ServerProcess::start(dir.path(), &env);
    call(&http, Method::POST, format!("{}/v1/agents", server.base), Some(json!({"name": "a", "model": "claude-sonnet-4-6"}))).await;
    let got = receiver.wait_for(1).await;
    verify(&secret, &got[0]);
}
