//! `mcp_oauth_validate` against a fake MCP server and OAuth token endpoint.

mod support;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use support::{Backend, spawn_app_custom};

async fn fake_oauth_world() -> String {
    async fn mcp(headers: HeaderMap) -> (StatusCode, axum::Json<Value>) {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        if auth == "Bearer good-access" {
            (StatusCode::OK, axum::Json(json!({"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {"name": "fake"}}})))
        } else {
            // a careless server echoes the token it refused
            (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": format!("invalid token {auth}")})))
        }
    }
    async fn token(body: String) -> (StatusCode, axum::Json<Value>) {
        let form: std::collections::HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
        let ok = form.get("grant_type").map(String::as_str) == Some("refresh_token")
            && form.get("refresh_token").map(String::as_str) == Some("refresh-1")
            && form.get("client_secret").map(String::as_str) == Some("client-secret-xyz");
        if ok {
            (StatusCode::OK, axum::Json(json!({"access_token": "good-access", "refresh_token": "refresh-2", "expires_in": 3600, "token_type": "Bearer"})))
        } else {
            (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_grant", "echo": form.get("refresh_token")})))
        }
    }
    let app = Router::new().route("/mcp", post(mcp)).route("/token", post(token));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn oauth(base: &str, access: &str, refresh: Option<&str>) -> Value {
    let mut auth = json!({"type": "mcp_oauth", "mcp_server_url": format!("{base}/mcp"), "access_token": access});
    if let Some(r) = refresh {
        auth["refresh"] = json!({"client_id": "client-1", "refresh_token": r, "token_endpoint": format!("{base}/token"),
            "token_endpoint_auth": {"type": "client_secret_post", "client_secret": "client-secret-xyz"}});
    }
    json!({"auth": auth})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_probes_refreshes_and_stores_rotated_tokens() {
    let base = fake_oauth_world().await;
    let app = spawn_app_custom(Backend::Sqlite, None, |o| o.unsafe_allow_private_fetch = true).await.unwrap();
    let v = app.ok("/v1/vaults", json!({"display_name": "v"})).await["id"].as_str().unwrap().to_owned();
    let validate = |id: &str| format!("/v1/vaults/{v}/credentials/{id}/mcp_oauth_validate");

    // an expired access token is refreshed, the new tokens are stored, and the probe passes
    let c = app.ok(&format!("/v1/vaults/{v}/credentials"), oauth(&base, "stale-access", Some("refresh-1"))).await;
    let id = c["id"].as_str().unwrap().to_owned();
    let r = app.ok(&validate(&id), json!(null)).await;
    assert_eq!(r["type"], "vault_credential_validation");
    assert_eq!(r["status"], "valid", "{r}");
    assert_eq!(r["refresh"]["status"], "succeeded");
    assert_eq!(r["has_refresh_token"], true);
    let tenant = app.platform.find_tenant("default").await.unwrap();
    let stored = app.platform.store.get_credential(&tenant.id, &v, &id).await.unwrap().unwrap();
    let secrets = app.platform.secrets.as_ref().unwrap();
    assert_eq!(openma_core::vaults::open_secret(secrets, &tenant.id, &stored, "access_token").as_deref(), Some("good-access"));
    assert_eq!(openma_core::vaults::open_secret(secrets, &tenant.id, &stored, "refresh_token").as_deref(), Some("refresh-2"));
    assert!(app.get(&format!("/v1/vaults/{v}/credentials/{id}")).await.body["auth"]["expires_at"].is_string());
    let again = app.ok(&validate(&id), json!(null)).await;
    assert_eq!((again["status"].as_str(), again["refresh"].is_null()), (Some("valid"), true), "{again}");

    // a refresh the endpoint refuses: invalid, with the captured response scrubbed of secrets
    let bad = app.ok(&format!("/v1/vaults/{v}/credentials"), oauth(&base.replace("127.0.0.1", "localhost"), "stale-access", Some("refresh-wrong"))).await;
    let r = app.ok(&validate(bad["id"].as_str().unwrap()), json!(null)).await;
    assert_eq!(r["status"], "invalid", "{r}");
    assert_eq!(r["refresh"]["status"], "failed");
    assert_eq!(r["refresh"]["http_response"]["status_code"], 400);
    let text = r.to_string();
    assert!(!text.contains("refresh-wrong") && !text.contains("stale-access") && !text.contains("client-secret-xyz"), "secrets in the report: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_without_refresh_or_to_private_addresses_is_honest() {
    let base = fake_oauth_world().await;
    let app = spawn_app_custom(Backend::Sqlite, None, |o| o.unsafe_allow_private_fetch = true).await.unwrap();
    let v = app.ok("/v1/vaults", json!({"display_name": "v"})).await["id"].as_str().unwrap().to_owned();
    let c = app.ok(&format!("/v1/vaults/{v}/credentials"), oauth(&base, "stale-access", None)).await;
    let r = app.ok(&format!("/v1/vaults/{v}/credentials/{}/mcp_oauth_validate", c["id"].as_str().unwrap()), json!(null)).await;
    assert_eq!((r["status"].as_str(), r["refresh"]["status"].as_str()), (Some("invalid"), Some("no_refresh_token")), "{r}");
    assert!(!r.to_string().contains("stale-access"), "the echoed token is scrubbed: {r}");
    let bearer = app.ok(&format!("/v1/vaults/{v}/credentials"), json!({"auth": {"type": "static_bearer", "mcp_server_url": "https://x.example.com", "token": "t"}})).await;
    let r = app.post(&format!("/v1/vaults/{v}/credentials/{}/mcp_oauth_validate", bearer["id"].as_str().unwrap()), json!(null)).await;
    assert_eq!(r.status, reqwest::StatusCode::BAD_REQUEST);

    // the production guard: loopback targets are never contacted
    let guarded = spawn_app_custom(Backend::Sqlite, None, |_| {}).await.unwrap();
    let v = guarded.ok("/v1/vaults", json!({"display_name": "v"})).await["id"].as_str().unwrap().to_owned();
    let c = guarded.ok(&format!("/v1/vaults/{v}/credentials"), oauth(&base, "good-access", Some("refresh-1"))).await;
    let r = guarded.ok(&format!("/v1/vaults/{v}/credentials/{}/mcp_oauth_validate", c["id"].as_str().unwrap()), json!(null)).await;
    assert_ne!(r["status"], "valid", "a loopback MCP server must not be reachable: {r}");
}
