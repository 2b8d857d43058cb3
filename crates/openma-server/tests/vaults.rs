//! Vaults and credentials on SQLite and PostgreSQL: CRUD, cascades, uniqueness, limits,
//! tenant isolation, and secrets that never come back out.

#[macro_use]
mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Backend, TestApp, spawn_app};


backend_stories!(
    vault_lifecycle_and_cascading_archive,
    credentials_are_unique_per_server_and_limited_per_vault,
    secrets_never_appear_in_responses,
    credential_updates_keep_the_type_and_replace_secrets,
    other_tenants_cannot_reach_vaults,
    sessions_attach_existing_vaults,
);

const SECRET: &str = "sk-live-SUPERSECRET-do-not-leak-4242";

fn bearer(url: &str) -> Value {
    json!({"auth": {"type": "static_bearer", "mcp_server_url": url, "token": SECRET}})
}

async fn vault(app: &TestApp) -> String {
    app.ok("/v1/vaults", json!({"display_name": "v", "metadata": {"team": "a"}})).await["id"].as_str().unwrap().to_owned()
}

async fn vault_lifecycle_and_cascading_archive(app: TestApp) {
    let v = app.ok("/v1/vaults", json!({"display_name": "prod"})).await;
    let id = v["id"].as_str().unwrap();
    assert!(id.starts_with("vlt_"));
    assert_eq!(v["type"], "vault");
    let u = app.ok(&format!("/v1/vaults/{id}"), json!({"display_name": "production", "metadata": {"k": "v"}})).await;
    assert_eq!((u["display_name"].as_str(), u["metadata"]["k"].as_str()), (Some("production"), Some("v")));
    let c = app.ok(&format!("/v1/vaults/{id}/credentials"), bearer("https://mcp.example.com/sse")).await;
    let cid = c["id"].as_str().unwrap();
    assert!(cid.starts_with("vcrd_"));
    assert_eq!(c["type"], "vault_credential");
    let archived = app.ok(&format!("/v1/vaults/{id}/archive"), json!(null)).await;
    assert!(archived["archived_at"].is_string());
    let cred = app.get(&format!("/v1/vaults/{id}/credentials/{cid}")).await.body;
    assert!(cred["archived_at"].is_string(), "archiving a vault archives its credentials");
    assert!(app.get("/v1/vaults").await.body["data"].as_array().unwrap().is_empty());
    let del = app.delete(&format!("/v1/vaults/{id}")).await;
    assert_eq!(del.body, json!({"id": id, "type": "vault_deleted"}));
    assert_eq!(app.get(&format!("/v1/vaults/{id}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&format!("/v1/vaults/{id}/credentials/{cid}")).await.status, StatusCode::NOT_FOUND);
}

async fn credentials_are_unique_per_server_and_limited_per_vault(app: TestApp) {
    let v = vault(&app).await;
    let first = app.ok(&format!("/v1/vaults/{v}/credentials"), bearer("https://mcp.example.com/sse")).await;
    // the same server spelled differently is the same server
    let dup = app.post(&format!("/v1/vaults/{v}/credentials"), bearer("HTTPS://MCP.example.com:443/sse/")).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.headers["x-should-retry"], "false");
    let env = json!({"auth": {"type": "environment_variable", "secret_name": "GITHUB_TOKEN", "secret_value": SECRET, "networking": {"type": "limited", "allowed_hosts": ["api.github.com"]}}});
    app.ok(&format!("/v1/vaults/{v}/credentials"), env.clone()).await;
    let again = app.post(&format!("/v1/vaults/{v}/credentials"), env).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    // archived credentials free their key
    app.ok(&format!("/v1/vaults/{v}/credentials/{}/archive", first["id"].as_str().unwrap()), json!(null)).await;
    app.ok(&format!("/v1/vaults/{v}/credentials"), bearer("https://mcp.example.com/sse")).await;
    for i in 0..18 {
        app.ok(&format!("/v1/vaults/{v}/credentials"), bearer(&format!("https://s{i}.example.com"))).await;
    }
    let over = app.post(&format!("/v1/vaults/{v}/credentials"), bearer("https://one-too-many.example.com")).await;
    assert_eq!(over.status, StatusCode::BAD_REQUEST, "{}", over.body);
    for bad in [
        json!({"auth": {"type": "environment_variable", "secret_name": "1BAD", "secret_value": "x", "networking": {"type": "unrestricted"}}}),
        json!({"auth": {"type": "static_bearer", "mcp_server_url": "not a url", "token": "x"}}),
        json!({"auth": {"type": "mcp_oauth", "mcp_server_url": "https://m.example", "access_token": "x", "expires_at": "2001-01-01T00:00:00Z"}}),
        json!({"auth": {"type": "static_bearer", "mcp_server_url": "https://m.example", "token": ""}}),
        json!({"auth": {"type": "ftp", "url": "x"}}),
    ] {
        let other = vault(&app).await;
        assert_eq!(app.post(&format!("/v1/vaults/{other}/credentials"), bad.clone()).await.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

async fn secrets_never_appear_in_responses(app: TestApp) {
    let v = vault(&app).await;
    let oauth = json!({"auth": {"type": "mcp_oauth", "mcp_server_url": "https://o.example.com", "access_token": SECRET, "expires_at": "2099-01-01T00:00:00Z",
        "refresh": {"client_id": "cid", "refresh_token": SECRET, "token_endpoint": "https://o.example.com/token", "token_endpoint_auth": {"type": "client_secret_post", "client_secret": SECRET}, "scope": "read"}}});
    let mut bodies = vec![
        app.ok(&format!("/v1/vaults/{v}/credentials"), oauth).await,
        app.ok(&format!("/v1/vaults/{v}/credentials"), bearer("https://b.example.com")).await,
        app.ok(&format!("/v1/vaults/{v}/credentials"), json!({"auth": {"type": "environment_variable", "secret_name": "TOKEN", "secret_value": SECRET, "networking": {"type": "unrestricted"}}})).await,
    ];
    assert_eq!(bodies[0]["auth"]["refresh"]["token_endpoint_auth"], json!({"type": "client_secret_post"}));
    assert_eq!(bodies[2]["auth"]["injection_location"], json!({"header": true, "body": false}));
    bodies.push(app.get(&format!("/v1/vaults/{v}/credentials")).await.body);
    let id = bodies[1]["id"].as_str().unwrap().to_owned();
    bodies.push(app.ok(&format!("/v1/vaults/{v}/credentials/{id}"), json!({"auth": {"type": "static_bearer", "token": SECRET}})).await);
    for b in &bodies {
        assert!(!b.to_string().contains(SECRET), "a secret leaked into a response: {b}");
    }
    // on SQLite, the database files hold only sealed values
    let dir = app.platform.store.describe().await.unwrap();
    if dir.starts_with("sqlite") {
        for entry in std::fs::read_dir(app.data_dir()).unwrap().flatten() {
            let bytes = std::fs::read(entry.path()).unwrap_or_default();
            assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()), "plaintext secret in {}", entry.path().display());
        }
    }
}

async fn credential_updates_keep_the_type_and_replace_secrets(app: TestApp) {
    let v = vault(&app).await;
    let c = app.ok(&format!("/v1/vaults/{v}/credentials"), json!({"auth": {"type": "environment_variable", "secret_name": "API_KEY", "secret_value": "one", "networking": {"type": "unrestricted"}}, "display_name": "d"})).await;
    let id = c["id"].as_str().unwrap();
    let u = app
        .ok(&format!("/v1/vaults/{v}/credentials/{id}"), json!({"auth": {"type": "environment_variable", "secret_value": "two", "networking": {"type": "limited", "allowed_hosts": ["api.example.com"]}, "injection_location": {"body": true}}, "display_name": null}))
        .await;
    assert_eq!(u["auth"]["networking"], json!({"type": "limited", "allowed_hosts": ["api.example.com"]}));
    assert_eq!(u["auth"]["injection_location"], json!({"header": true, "body": true}));
    assert_eq!(u["auth"]["secret_name"], "API_KEY", "the name is immutable");
    assert!(u["display_name"].is_null());
    let change = app.post(&format!("/v1/vaults/{v}/credentials/{id}"), json!({"auth": {"type": "static_bearer", "token": "x"}})).await;
    assert_eq!(change.status, StatusCode::BAD_REQUEST);
    let tenant = app.platform.find_tenant("default").await.unwrap();
    let stored = app.platform.store.get_credential(&tenant.id, &v, id).await.unwrap().unwrap();
    let secrets = app.platform.secrets.as_ref().unwrap();
    assert_eq!(openma_core::vaults::open_secret(secrets, &tenant.id, &stored, "secret_value").as_deref(), Some("two"));
    let archived = app.ok(&format!("/v1/vaults/{v}/credentials/{id}/archive"), json!(null)).await;
    assert!(archived["archived_at"].is_string());
    let purged = app.platform.store.get_credential(&tenant.id, &v, id).await.unwrap().unwrap();
    assert!(purged.secrets.is_empty(), "archiving purges the secrets");
    let del = app.delete(&format!("/v1/vaults/{v}/credentials/{id}")).await;
    assert_eq!(del.body, json!({"id": id, "type": "vault_credential_deleted"}));
}

async fn other_tenants_cannot_reach_vaults(app: TestApp) {
    let other = app.other_tenant("other").await;
    let v = vault(&app).await;
    let c = app.ok(&format!("/v1/vaults/{v}/credentials"), bearer("https://b.example.com")).await;
    let cid = c["id"].as_str().unwrap();
    for (m, path, body) in [
        (Method::GET, format!("/v1/vaults/{v}"), None),
        (Method::POST, format!("/v1/vaults/{v}"), Some(json!({"display_name": "x"}))),
        (Method::POST, format!("/v1/vaults/{v}/archive"), None),
        (Method::DELETE, format!("/v1/vaults/{v}"), None),
        (Method::GET, format!("/v1/vaults/{v}/credentials"), None),
        (Method::POST, format!("/v1/vaults/{v}/credentials"), Some(bearer("https://x.example.com"))),
        (Method::GET, format!("/v1/vaults/{v}/credentials/{cid}"), None),
        (Method::POST, format!("/v1/vaults/{v}/credentials/{cid}"), Some(json!({"display_name": "x"}))),
        (Method::DELETE, format!("/v1/vaults/{v}/credentials/{cid}"), None),
    ] {
        let r = app.call(m.clone(), &path, Some(&other), body).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{m} {path}");
    }
    let theirs = app.call(Method::GET, "/v1/vaults", Some(&other), None).await;
    assert!(theirs.body["data"].as_array().unwrap().is_empty());
    let a = app.call(Method::POST, "/v1/agents", Some(&other), Some(json!({"name": "a", "model": "m"}))).await.body;
    let s = app.call(Method::POST, "/v1/sessions", Some(&other), Some(json!({"agent": a["id"], "vault_ids": [v]}))).await;
    assert_eq!(s.status, StatusCode::NOT_FOUND, "another tenant's vault cannot be attached");
}

async fn sessions_attach_existing_vaults(app: TestApp) {
    let v = vault(&app).await;
    let a = app.agent("a").await;
    let s = app.ok("/v1/sessions", json!({"agent": a["id"], "vault_ids": [v, v]})).await;
    assert_eq!(s["vault_ids"], json!([v]));
    app.ok(&format!("/v1/vaults/{v}/archive"), json!(null)).await;
    assert_eq!(app.post("/v1/sessions", json!({"agent": a["id"], "vault_ids": [v]})).await.status, StatusCode::BAD_REQUEST);
}
