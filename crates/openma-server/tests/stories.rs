//! The story suite: what a client does with agents, environments and sessions, run
//! against a real server on SQLite and on PostgreSQL from one source.

#[macro_use]
mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Backend, TestApp, spawn_app};


backend_stories!(
    agent_updates_create_versions_and_noops_do_not,
    agent_version_conflict_is_409_without_retry,
    agent_versions_are_listed_newest_first_and_retrievable,
    archived_agents_are_hidden_read_only_and_start_no_sessions,
    concurrent_agent_updates_each_get_their_own_version,
    agent_lists_paginate_over_every_agent,
    environments_keep_omitted_config_and_refuse_type_changes,
    environment_in_use_cannot_be_deleted,
    sessions_pin_the_agent_version_they_were_created_with,
    session_without_environment_uses_the_tenant_default,
    seed_session_shape_with_agent_id_works,
    sessions_filter_order_and_page_both_ways,
    session_updates_patch_title_and_metadata,
    archived_session_is_terminated_and_read_only,
    deleted_session_is_gone,
    refused_session_resources_leave_nothing,
    tenants_cannot_see_or_touch_each_others_objects,
    keys_authenticate_by_bearer_or_x_api_key_and_can_be_revoked,
    bad_input_gets_a_4xx_envelope_never_a_5xx,
    operations_endpoints_report_health_metrics_and_openapi,
    idempotency_keys_replay_the_first_result,
);

async fn agent_updates_create_versions_and_noops_do_not(app: TestApp) {
    let a = app.ok("/v1/agents", json!({"name": "a", "model": "m", "system": "s", "metadata": {"k": "v", "j": "w"}})).await;
    let id = a["id"].as_str().unwrap();
    assert_eq!(a["version"], 1);
    let noop = app.ok(&format!("/v1/agents/{id}"), json!({"name": "a", "system": "s"})).await;
    assert_eq!(noop["version"], 1);
    let b = app.ok(&format!("/v1/agents/{id}"), json!({"system": null, "metadata": {"k": null, "n": "x"}})).await;
    assert_eq!(b["version"], 2);
    assert_eq!(b["system"], Value::Null);
    assert_eq!(b["metadata"], json!({"j": "w", "n": "x"}));
    assert_eq!(b["name"], "a", "omitted fields are kept");
    let got = app.get(&format!("/v1/agents/{id}")).await;
    assert_eq!(got.body, b);
}

async fn agent_version_conflict_is_409_without_retry(app: TestApp) {
    let a = app.agent("a").await;
    let id = a["id"].as_str().unwrap();
    app.ok(&format!("/v1/agents/{id}"), json!({"version": 1, "system": "new"})).await;
    let stale = app.post(&format!("/v1/agents/{id}"), json!({"version": 1, "system": "newer"})).await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(stale.error_type(), "conflict_error");
    assert_eq!(stale.headers["x-should-retry"], "false");
    // a stale version conflicts even when the change would be a no-op
    let same = app.post(&format!("/v1/agents/{id}"), json!({"version": 1, "system": "new"})).await;
    assert_eq!(same.status, StatusCode::CONFLICT);
}

async fn agent_versions_are_listed_newest_first_and_retrievable(app: TestApp) {
    let a = app.agent("a").await;
    let id = a["id"].as_str().unwrap();
    for i in 0..4 {
        app.ok(&format!("/v1/agents/{id}"), json!({"system": format!("v{}", i + 2)})).await;
    }
    let versions: Vec<i64> = {
        let r = app.get(&format!("/v1/agents/{id}/versions?limit=2")).await;
        assert_eq!(r.body["data"].as_array().unwrap().len(), 2);
        let all = app.collect_ids(&format!("/v1/agents/{id}/versions?limit=2")).await;
        assert_eq!(all.len(), 5);
        let mut v = Vec::new();
        let mut page = String::new();
        loop {
            let url = if page.is_empty() { format!("/v1/agents/{id}/versions?limit=2") } else { format!("/v1/agents/{id}/versions?limit=2&page={page}") };
            let r = app.get(&url).await;
            v.extend(r.body["data"].as_array().unwrap().iter().map(|a| a["version"].as_i64().unwrap()));
            match r.body["next_page"].as_str() { Some(p) => page = p.to_owned(), None => break }
        }
        v
    };
    assert_eq!(versions, vec![5, 4, 3, 2, 1]);
    let v1 = app.get(&format!("/v1/agents/{id}?version=1")).await;
    assert_eq!(v1.body["version"], 1);
    assert_eq!(v1.body["system"], Value::Null);
    let v3 = app.get(&format!("/v1/agents/{id}?version=3")).await;
    assert_eq!(v3.body["system"], "v3");
    assert_eq!(app.get(&format!("/v1/agents/{id}?version=9")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&format!("/v1/agents/{id}?version=0")).await.status, StatusCode::BAD_REQUEST);
}

async fn archived_agents_are_hidden_read_only_and_start_no_sessions(app: TestApp) {
    let a = app.agent("a").await;
    let id = a["id"].as_str().unwrap();
    let archived = app.ok(&format!("/v1/agents/{id}/archive"), json!(null)).await;
    assert!(archived["archived_at"].is_string());
    assert_eq!(archived["version"], 1);
    assert!(!app.collect_ids("/v1/agents").await.contains(&id.to_owned()));
    assert!(app.collect_ids("/v1/agents?include_archived=true").await.contains(&id.to_owned()));
    let upd = app.post(&format!("/v1/agents/{id}"), json!({"name": "b"})).await;
    assert_eq!(upd.status, StatusCode::BAD_REQUEST);
    let s = app.post("/v1/sessions", json!({"agent": id})).await;
    assert_eq!(s.status, StatusCode::BAD_REQUEST);
}

async fn concurrent_agent_updates_each_get_their_own_version(app: TestApp) {
    let a = app.agent("a").await;
    let id = a["id"].as_str().unwrap().to_owned();
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (app, id) = (app.clone(), id.clone());
        tasks.push(tokio::spawn(async move { app.ok(&format!("/v1/agents/{id}"), json!({"system": format!("s{i}")})).await }));
    }
    let mut versions: Vec<i64> = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap()["version"].as_i64().unwrap());
    }
    versions.sort();
    assert_eq!(versions, (2..=9).collect::<Vec<_>>(), "every update wins its own version, none is lost");
    assert_eq!(app.collect_ids(&format!("/v1/agents/{id}/versions")).await.len(), 9);
}

async fn agent_lists_paginate_over_every_agent(app: TestApp) {
    let mut made = Vec::new();
    for i in 0..7 {
        made.push(app.agent(&format!("a{i}")).await["id"].as_str().unwrap().to_owned());
    }
    let listed = app.collect_ids("/v1/agents?limit=3").await;
    made.reverse();
    assert_eq!(listed, made, "newest first, each once");
    let first = app.get("/v1/agents?limit=3").await;
    assert!(first.body.get("prev_page").is_none(), "single-direction lists carry no prev_page");
}

async fn environments_keep_omitted_config_and_refuse_type_changes(app: TestApp) {
    let e = app
        .ok("/v1/environments", json!({"name": "e", "config": {"type": "cloud", "networking": {"type": "limited", "allowed_hosts": ["api.example.com"], "allow_package_managers": true}, "packages": {"pip": ["requests==2.32.0"]}}}))
        .await;
    let id = e["id"].as_str().unwrap();
    assert_eq!(e["type"], "environment");
    assert_eq!(e["config"]["packages"]["npm"], json!([]));
    let u = app.ok(&format!("/v1/environments/{id}"), json!({"config": {"type": "cloud", "networking": {"type": "limited", "allow_mcp_servers": true}}, "metadata": {"a": "1"}})).await;
    assert_eq!(u["config"]["networking"], json!({"type": "limited", "allowed_hosts": ["api.example.com"], "allow_mcp_servers": true, "allow_package_managers": true}));
    assert_eq!(u["config"]["packages"]["pip"], json!(["requests==2.32.0"]));
    // packages are built into a layer in the background; the environment object stays the spec's
    let build = app.get(&format!("/v1/environments/{id}/build")).await;
    assert_eq!(build.status, StatusCode::OK, "{}", build.body);
    assert_eq!(build.body["type"], "environment_build");
    assert!(build.body["packages_hash"].as_str().is_some_and(|h| h.len() == 32), "{}", build.body);
    assert!(e["config"].get("limits").is_none(), "no limits set, none shown");
    let cargo = app.post(&format!("/v1/environments/{id}"), json!({"config": {"type": "cloud", "packages": {"cargo": ["ripgrep"]}}})).await;
    assert_eq!(cargo.status, StatusCode::BAD_REQUEST, "cargo packages are refused, not accepted and ignored");
    assert_eq!(cargo.body["error"]["details"]["error_code"], "unsupported_feature");
    let shell = app.post(&format!("/v1/environments/{id}"), json!({"config": {"type": "cloud", "packages": {"pip": ["six;id"]}}})).await;
    assert_eq!(shell.status, StatusCode::BAD_REQUEST);
    let u2 = app.ok(&format!("/v1/environments/{id}"), json!({"metadata": {"a": ""}})).await;
    assert_eq!(u2["metadata"], json!({}), "an empty string deletes an environment metadata key");
    let change = app.post(&format!("/v1/environments/{id}"), json!({"config": {"type": "self_hosted"}})).await;
    assert_eq!(change.status, StatusCode::BAD_REQUEST);
    assert_eq!(change.body["error"]["details"]["error_code"], "invalid_config_type_change");
    let bad = app.post("/v1/environments", json!({"name": "x", "config": {"type": "cloud", "networking": {"type": "limited"}, "packages": {"pip": ["x"]}}})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let archived = app.ok(&format!("/v1/environments/{id}/archive"), json!(null)).await;
    assert!(archived["archived_at"].is_string());
    let after = app.post(&format!("/v1/environments/{id}"), json!({"name": "y"})).await;
    assert_eq!(after.body["error"]["details"]["error_code"], "environment_archived");
}

async fn environment_in_use_cannot_be_deleted(app: TestApp) {
    let a = app.agent("a").await;
    let e = app.ok("/v1/environments", json!({"name": "e"})).await;
    let (aid, eid) = (a["id"].as_str().unwrap(), e["id"].as_str().unwrap());
    let s = app.ok("/v1/sessions", json!({"agent": aid, "environment_id": eid})).await;
    let refused = app.delete(&format!("/v1/environments/{eid}")).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.headers["x-should-retry"], "false");
    app.ok(&format!("/v1/sessions/{}/archive", s["id"].as_str().unwrap()), json!(null)).await;
    let done = app.delete(&format!("/v1/environments/{eid}")).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.body, json!({"id": eid, "type": "environment_deleted"}));
    assert_eq!(app.get(&format!("/v1/environments/{eid}")).await.status, StatusCode::NOT_FOUND);
}

async fn sessions_pin_the_agent_version_they_were_created_with(app: TestApp) {
    let a = app.ok("/v1/agents", json!({"name": "a", "model": "m", "system": "one"})).await;
    let id = a["id"].as_str().unwrap();
    let latest = app.ok("/v1/sessions", json!({"agent": id})).await;
    app.ok(&format!("/v1/agents/{id}"), json!({"system": "two"})).await;
    let pinned = app.ok("/v1/sessions", json!({"agent": {"type": "agent", "id": id, "version": 1}})).await;
    let newest = app.ok("/v1/sessions", json!({"agent": id})).await;
    assert_eq!(latest["status"], "idle");
    let s1 = app.get(&format!("/v1/sessions/{}", latest["id"].as_str().unwrap())).await.body;
    assert_eq!((s1["agent"]["version"].as_i64(), s1["agent"]["system"].as_str()), (Some(1), Some("one")), "a snapshot is immutable");
    assert_eq!((pinned["agent"]["version"].as_i64(), pinned["agent"]["system"].as_str()), (Some(1), Some("one")));
    assert_eq!((newest["agent"]["version"].as_i64(), newest["agent"]["system"].as_str()), (Some(2), Some("two")));
    let overridden = app
        .ok("/v1/sessions", json!({"agent": {"type": "agent_with_overrides", "id": id, "system": "three", "tools": [{"type": "bash"}]}}))
        .await;
    assert_eq!(overridden["agent"]["system"], "three");
    assert_eq!(overridden["agent"]["tools"][0]["type"], "agent_toolset_20260401");
    let agent_now = app.get(&format!("/v1/agents/{id}")).await.body;
    assert_eq!((agent_now["version"].as_i64(), agent_now["system"].as_str()), (Some(2), Some("two")), "overrides never change the agent");
}

async fn session_without_environment_uses_the_tenant_default(app: TestApp) {
    let a = app.agent("a").await;
    let s1 = app.ok("/v1/sessions", json!({"agent": a["id"]})).await;
    let s2 = app.ok("/v1/sessions", json!({"agent": a["id"]})).await;
    let env = s1["environment_id"].as_str().unwrap();
    assert_eq!(s2["environment_id"], env, "one default environment per tenant");
    let e = app.get(&format!("/v1/environments/{env}")).await;
    assert_eq!(e.status, StatusCode::OK);
    assert_eq!(e.body["config"]["networking"]["type"], "unrestricted");
}

async fn seed_session_shape_with_agent_id_works(app: TestApp) {
    let a = app.ok("/v1/agents", json!({"name": "smoke", "model": "claude-sonnet-4-6", "system": "Reply with exactly one word.", "tools": [{"type": "bash"}]})).await;
    let r = app
        .http
        .post(format!("{}/v1/sessions", app.base))
        .header("x-api-key", &app.key)
        .header("content-type", "application/json")
        .body(json!({"agent_id": a["id"]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["agent"]["id"], a["id"]);
    let tools = &s["agent"]["tools"][0];
    assert_eq!(tools["configs"][0]["name"], "bash");
    assert_eq!(tools["default_config"]["enabled"], false);
}

async fn sessions_filter_order_and_page_both_ways(app: TestApp) {
    let a = app.agent("a").await;
    let b = app.agent("b").await;
    let mut made = Vec::new();
    for i in 0..5 {
        let agent = if i % 2 == 0 { &a } else { &b };
        made.push(app.ok("/v1/sessions", json!({"agent": agent["id"]})).await["id"].as_str().unwrap().to_owned());
    }
    let archived = made[4].clone();
    app.ok(&format!("/v1/sessions/{archived}/archive"), json!(null)).await;
    let asc = app.collect_ids("/v1/sessions?order=asc&limit=2").await;
    assert_eq!(asc, made[..4].to_vec());
    let desc = app.collect_ids("/v1/sessions?limit=2&include_archived=true").await;
    assert_eq!(desc, made.iter().rev().cloned().collect::<Vec<_>>());
    let of_a = app.collect_ids(&format!("/v1/sessions?agent_id={}&order=asc", a["id"].as_str().unwrap())).await;
    assert_eq!(of_a, vec![made[0].clone(), made[2].clone()]);
    let v = app.collect_ids(&format!("/v1/sessions?agent_id={}&agent_version=2", a["id"].as_str().unwrap())).await;
    assert!(v.is_empty());
    let idle = app.collect_ids("/v1/sessions?statuses[]=idle&statuses[]=running&order=asc").await;
    assert_eq!(idle, made[..4].to_vec());
    let terminated = app.collect_ids("/v1/sessions?statuses[]=terminated&include_archived=true").await;
    assert_eq!(terminated, vec![archived]);
    // walk forward two pages, then back with prev_page
    let p1 = app.get("/v1/sessions?order=asc&limit=2").await.body;
    assert!(p1["prev_page"].is_null());
    let p2 = app.get(&format!("/v1/sessions?order=asc&limit=2&page={}", p1["next_page"].as_str().unwrap())).await.body;
    let back = app.get(&format!("/v1/sessions?order=asc&limit=2&page={}", p2["prev_page"].as_str().unwrap())).await.body;
    let ids = |page: &Value| page["data"].as_array().unwrap().iter().map(|s| s["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&back), ids(&p1));
    // a cursor is bound to its order
    let wrong = app.get(&format!("/v1/sessions?order=desc&page={}", p1["next_page"].as_str().unwrap())).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    // created_at filters
    let first = app.get(&format!("/v1/sessions/{}", made[1])).await.body;
    let since = first["created_at"].as_str().unwrap();
    let later = app.collect_ids(&format!("/v1/sessions?order=asc&created_at[gte]={since}")).await;
    assert_eq!(later, made[1..4].to_vec());
    let after = app.collect_ids(&format!("/v1/sessions?order=asc&created_at[gt]={since}")).await;
    assert_eq!(after, made[2..4].to_vec());
}

async fn session_updates_patch_title_and_metadata(app: TestApp) {
    let a = app.agent("a").await;
    let s = app.ok("/v1/sessions", json!({"agent": a["id"], "title": "t", "metadata": {"a": "1", "b": "2"}})).await;
    let id = s["id"].as_str().unwrap();
    let u = app.ok(&format!("/v1/sessions/{id}"), json!({"metadata": {"a": null, "c": "3"}})).await;
    assert_eq!(u["metadata"], json!({"b": "2", "c": "3"}));
    assert_eq!(u["title"], "t");
    let cleared = app.ok(&format!("/v1/sessions/{id}"), json!({"title": null})).await;
    assert_eq!(cleared["title"], Value::Null);
    let tools = app.ok(&format!("/v1/sessions/{id}"), json!({"agent": {"tools": [{"type": "read"}]}})).await;
    assert_eq!(tools["agent"]["tools"][0]["configs"][0]["name"], "read");
    let vaults = app.post(&format!("/v1/sessions/{id}"), json!({"vault_ids": ["vlt_1"]})).await;
    assert_eq!(vaults.status, StatusCode::BAD_REQUEST);
}

async fn archived_session_is_terminated_and_read_only(app: TestApp) {
    let a = app.agent("a").await;
    let s = app.ok("/v1/sessions", json!({"agent": a["id"]})).await;
    let id = s["id"].as_str().unwrap();
    let archived = app.ok(&format!("/v1/sessions/{id}/archive"), json!(null)).await;
    assert_eq!(archived["status"], "terminated");
    assert!(archived["archived_at"].is_string());
    let upd = app.post(&format!("/v1/sessions/{id}"), json!({"title": "x"})).await;
    assert_eq!(upd.status, StatusCode::BAD_REQUEST);
    assert!(!app.collect_ids("/v1/sessions").await.contains(&id.to_owned()));
}

async fn deleted_session_is_gone(app: TestApp) {
    let a = app.agent("a").await;
    let s = app.ok("/v1/sessions", json!({"agent": a["id"]})).await;
    let id = s["id"].as_str().unwrap();
    let r = app.delete(&format!("/v1/sessions/{id}")).await;
    assert_eq!(r.body, json!({"id": id, "type": "session_deleted"}));
    let gone = app.get(&format!("/v1/sessions/{id}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.error_type(), "not_found_error");
    assert_eq!(app.delete(&format!("/v1/sessions/{id}")).await.status, StatusCode::NOT_FOUND);
}

async fn refused_session_resources_leave_nothing(app: TestApp) {
    let a = app.agent("a").await;
    for bad in [
        json!({"type": "github_repository", "url": "git@github.com:o/r"}),
        json!({"type": "github_repository", "url": "https://github.com/o/r", "checkout": {"type": "commit", "sha": "abc"}}),
        json!({"type": "disk", "size": 1}),
    ] {
        let r = app.post("/v1/sessions", json!({"agent": a["id"], "resources": [bad]})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.error_type(), "invalid_request_error");
    }
    let vault = app.post("/v1/sessions", json!({"agent": a["id"], "vault_ids": ["vlt_missing"]})).await;
    assert_eq!(vault.status, StatusCode::NOT_FOUND);
    let file = app.post("/v1/sessions", json!({"agent": a["id"], "resources": [{"type": "file", "file_id": "file_missing"}]})).await;
    assert_eq!(file.status, StatusCode::NOT_FOUND);
    let store = app.post("/v1/sessions", json!({"agent": a["id"], "resources": [{"type": "memory_store", "memory_store_id": "memstore_missing"}]})).await;
    assert_eq!(store.status, StatusCode::NOT_FOUND);
    assert!(app.collect_ids("/v1/sessions").await.is_empty(), "a refused create leaves nothing behind");
}

async fn tenants_cannot_see_or_touch_each_others_objects(app: TestApp) {
    let other = app.other_tenant("other").await;
    let a = app.agent("mine").await;
    let e = app.ok("/v1/environments", json!({"name": "mine"})).await;
    let s = app.ok("/v1/sessions", json!({"agent": a["id"], "environment_id": e["id"]})).await;
    let (aid, eid, sid) = (a["id"].as_str().unwrap(), e["id"].as_str().unwrap(), s["id"].as_str().unwrap());
    let k = Some(other.as_str());
    let checks: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/v1/agents/{aid}"), None),
        (Method::GET, format!("/v1/agents/{aid}?version=1"), None),
        (Method::POST, format!("/v1/agents/{aid}"), Some(json!({"name": "stolen"}))),
        (Method::POST, format!("/v1/agents/{aid}/archive"), None),
        (Method::GET, format!("/v1/agents/{aid}/versions"), None),
        (Method::GET, format!("/v1/environments/{eid}"), None),
        (Method::POST, format!("/v1/environments/{eid}"), Some(json!({"name": "stolen"}))),
        (Method::POST, format!("/v1/environments/{eid}/archive"), None),
        (Method::DELETE, format!("/v1/environments/{eid}"), None),
        (Method::GET, format!("/v1/sessions/{sid}"), None),
        (Method::POST, format!("/v1/sessions/{sid}"), Some(json!({"title": "stolen"}))),
        (Method::POST, format!("/v1/sessions/{sid}/archive"), None),
        (Method::DELETE, format!("/v1/sessions/{sid}"), None),
        (Method::POST, "/v1/sessions".into(), Some(json!({"agent": aid}))),
        (Method::POST, "/v1/sessions".into(), Some(json!({"agent": {"type": "agent", "id": aid, "version": 1}}))),
    ];
    for (method, path, body) in checks {
        let r = app.call(method.clone(), &path, k, body).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {path} must look missing to another tenant: {}", r.body);
        assert_eq!(r.error_type(), "not_found_error");
    }
    // a session in the other tenant cannot use our environment either
    let theirs = app.call(Method::POST, "/v1/agents", k, Some(json!({"name": "theirs", "model": "m"}))).await.body;
    let r = app.call(Method::POST, "/v1/sessions", k, Some(json!({"agent": theirs["id"], "environment_id": eid}))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    for list in ["/v1/agents?include_archived=true", "/v1/environments?include_archived=true", "/v1/sessions?include_archived=true"] {
        let r = app.call(Method::GET, list, k, None).await;
        let ids: Vec<&str> = r.body["data"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect();
        assert!(!ids.contains(&aid) && !ids.contains(&eid) && !ids.contains(&sid), "{list} leaks: {ids:?}");
    }
    // nothing of ours changed
    let mine = app.get(&format!("/v1/agents/{aid}")).await.body;
    assert_eq!((mine["name"].as_str(), mine["archived_at"].is_null()), (Some("mine"), true));
    assert_eq!(app.get(&format!("/v1/sessions/{sid}")).await.body["title"], Value::Null);
    assert_eq!(app.get(&format!("/v1/environments/{eid}")).await.status, StatusCode::OK);
}

async fn keys_authenticate_by_bearer_or_x_api_key_and_can_be_revoked(app: TestApp) {
    let missing = app.call(Method::GET, "/v1/agents", None, None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.error_type(), "authentication_error");
    let wrong = app.call(Method::GET, "/v1/agents", Some("sk-oma-wrong"), None).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let r = app.http.get(format!("{}/v1/agents", app.base)).header("x-api-key", &app.key).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let tenant = app.platform.find_tenant("default").await.unwrap();
    let (key, secret) = app.platform.create_api_key(&tenant.id, "temp").await.unwrap();
    assert_eq!(app.call(Method::GET, "/v1/agents", Some(&secret), None).await.status, StatusCode::OK);
    let listed = app.platform.list_api_keys(&tenant.id).await.unwrap();
    let stored = listed.iter().find(|k| k.id == key.id).unwrap();
    assert!(stored.last_used_at.is_some(), "use is recorded");
    assert_ne!(stored.hash, secret, "only a hash is stored");
    app.platform.revoke_api_key(&tenant.id, &key.id).await.unwrap();
    assert_eq!(app.call(Method::GET, "/v1/agents", Some(&secret), None).await.status, StatusCode::UNAUTHORIZED);
}

async fn bad_input_gets_a_4xx_envelope_never_a_5xx(app: TestApp) {
    let a = app.agent("a").await;
    let aid = a["id"].as_str().unwrap();
    let raw = |path: &str, body: &str| {
        app.http.post(format!("{}{path}", app.base)).bearer_auth(&app.key).header("content-type", "application/json").body(body.to_owned()).send()
    };
    for (path, body) in [
        ("/v1/agents", "{not json"),
        ("/v1/agents", "[]"),
        ("/v1/agents", "{\"name\": 5, \"model\": \"m\"}"),
        ("/v1/agents", "{\"model\": \"m\"}"),
        ("/v1/sessions", "{\"agent\": 17}"),
    ] {
        let r = raw(path, body).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{body}");
    }
    let long = "x".repeat(100_001);
    let meta17: serde_json::Map<String, Value> = (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    for body in [
        json!({"name": "", "model": "m"}),
        json!({"name": "x".repeat(257), "model": "m"}),
        json!({"name": "a", "model": "m", "system": long}),
        json!({"name": "a", "model": "m", "description": "d".repeat(2049)}),
        json!({"name": "a", "model": "m", "metadata": meta17}),
        json!({"name": "a", "model": "m", "metadata": {"k": "v".repeat(513)}}),
        json!({"name": "a", "model": "m", "metadata": {"k".repeat(65): "v"}}),
        json!({"name": "a", "model": "m", "tools": [{"type": "nope"}]}),
        json!({"name": "a", "model": "m", "tools": [{"type": "custom", "name": "t", "description": "d", "input_schema": {"type": "array"}}]}),
        json!({"name": "a", "model": "m", "tools": (0..129).map(|i| json!({"type": "custom", "name": format!("t{i}"), "description": "d", "input_schema": {"type": "object"}})).collect::<Vec<_>>()}),
        json!({"name": "a", "model": "m", "mcp_servers": (0..21).map(|i| json!({"type": "url", "name": format!("s{i}"), "url": "https://x.example"})).collect::<Vec<_>>()}),
        json!({"name": "a", "model": {"id": "m", "effort": "extreme"}}),
    ] {
        let r = app.post("/v1/agents", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", &body.to_string()[..body.to_string().len().min(200)]);
        assert_eq!(r.error_type(), "invalid_request_error");
    }
    let meta = app.post("/v1/agents", json!({"name": "a", "model": "m", "metadata": meta17})).await;
    assert_eq!(meta.body["error"]["details"]["error_code"], "invalid_metadata");
    for path in ["/v1/agents?limit=1000", "/v1/agents?limit=0", "/v1/agents?limit=abc", "/v1/agents?page=garbage", "/v1/sessions?statuses[]=sleeping", "/v1/agents?created_at[gte]=yesterday", "/v1/sessions?order=sideways"] {
        let r = app.get(path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.body);
        assert_eq!(r.error_type(), "invalid_request_error");
    }
    for path in ["/v1/agents/nope", "/v1/agents/agent_%FF%FE", "/v1/sessions/sesn_!!", "/v1/environments/../../etc", "/v1/nothing"] {
        let r = app.get(path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.error_type(), "not_found_error");
    }
    let huge = raw("/v1/agents", &format!("{{\"name\": \"{}\"}}", "x".repeat(33 * 1024 * 1024))).await.unwrap();
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // empty-body POST and DELETE with a JSON content type, as the SDKs send them
    let empty = raw(&format!("/v1/agents/{aid}/archive"), "").await.unwrap();
    assert_eq!(empty.status(), StatusCode::OK);
    let wrong_method = app.call(Method::DELETE, &format!("/v1/agents/{aid}"), Some(&app.key), None).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.error_type(), "invalid_request_error");
    // the SDK's `beta=true` flag and unknown fields are tolerated
    assert_eq!(app.get("/v1/agents?beta=true").await.status, StatusCode::OK);
    assert_eq!(app.post("/v1/agents", json!({"name": "a", "model": "m", "future_field": 1})).await.status, StatusCode::OK);
}

async fn operations_endpoints_report_health_metrics_and_openapi(app: TestApp) {
    let h = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.body["status"], "ok");
    for backend in ["db", "blobs", "sandbox"] {
        assert!(h.body["backends"][backend].as_str().is_some_and(|s| !s.is_empty()), "{}", h.body);
    }
    assert!(h.body["version"].is_string());
    app.agent("counted").await;
    let m = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("openma_http_requests_total{method=\"POST\",route=\"/v1/agents\",status=\"200\"}"), "{m}");
    assert!(m.contains("openma_http_request_duration_seconds_bucket"), "{m}");
    let doc = app.call(Method::GET, "/v1/openapi.json", None, None).await.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/v1/agents", "/v1/agents/{agent_id}", "/v1/agents/{agent_id}/archive", "/v1/agents/{agent_id}/versions",
        "/v1/environments", "/v1/environments/{environment_id}", "/v1/environments/{environment_id}/archive",
        "/v1/sessions", "/v1/sessions/{session_id}", "/v1/sessions/{session_id}/archive", "/health", "/metrics"] {
        assert!(doc["paths"][path].is_object(), "openapi misses {path}");
    }
}

async fn idempotency_keys_replay_the_first_result(app: TestApp) {
    let post = |path: &str, key: &str, body: Value| {
        app.http.post(format!("{}{path}", app.base)).bearer_auth(&app.key).header("idempotency-key", key).json(&body).send()
    };
    let first = post("/v1/agents", "create-1", json!({"name": "once", "model": "m"})).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let a: Value = first.json().await.unwrap();
    let retry = post("/v1/agents", "create-1", json!({"name": "once", "model": "m"})).await.unwrap();
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let b: Value = retry.json().await.unwrap();
    assert_eq!(a["id"], b["id"], "a retried create returns the first result");
    assert_eq!(app.collect_ids("/v1/agents").await.len(), 1, "and creates nothing more");
    let reused = post("/v1/agents", "create-1", json!({"name": "other", "model": "m"})).await.unwrap();
    assert_eq!(reused.status(), StatusCode::BAD_REQUEST);
    let s = app.ok("/v1/sessions", json!({"agent": a["id"]})).await;
    let sid = s["id"].as_str().unwrap();
    // a refused request is replayed as refused too (no model configured: the turn errors, the POST succeeds)
    let events = json!({"events": [{"type": "user.interrupt"}]});
    for _ in 0..3 {
        assert_eq!(post(&format!("/v1/sessions/{sid}/events"), "send-1", events.clone()).await.unwrap().status(), StatusCode::OK);
    }
    let log = app.get(&format!("/v1/sessions/{sid}/events")).await.body;
    assert_eq!(log["data"].as_array().unwrap().len(), 1, "one event for three deliveries: {log}");
    // keys belong to their tenant
    let other = app.other_tenant("other").await;
    let theirs = app.http.post(format!("{}/v1/agents", app.base)).bearer_auth(&other).header("idempotency-key", "create-1").json(&json!({"name": "theirs", "model": "m"})).send().await.unwrap();
    assert_eq!(theirs.status(), StatusCode::OK);
    assert!(theirs.headers().get("idempotent-replayed").is_none());
}
