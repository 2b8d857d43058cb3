//! Memory stores mounted into a real sandbox: the agent (scripted model) reads and writes
//! them with bash and the file tools; its writes are versions attributed to the session by
//! the time the tool result exists; API writes are seen by the next tool call; read-only
//! mounts and `/mnt/memory` itself refuse writes; links never lead the server outside.

mod support;

use openma_fake_model::FakeModel;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Backend, TestApp, spawn_app_with_model, tool_turn as turn};

fn bwrap_available() -> bool {
    openma_sandbox::Sandboxes::check().is_ok()
}

/// The store's memories by path, with content.
async fn memories(app: &TestApp, store: &str) -> std::collections::BTreeMap<String, Value> {
    let list = app.get(&format!("/v1/memory_stores/{store}/memories?view=full&limit=20")).await.body;
    list["data"].as_array().unwrap().iter().map(|m| (m["path"].as_str().unwrap().to_owned(), m.clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_reads_and_writes_mounted_memory_stores() {
    if !bwrap_available() {
        assert!(std::env::var_os("CI").is_none(), "CI must install bubblewrap");
        return;
    }
    let model = FakeModel::start().await;
    let app = spawn_app_with_model(Backend::Sqlite, Some(model.base_url())).await.unwrap();
    let notes = app.ok("/v1/memory_stores", json!({"name": "Team Notes", "description": "What the team prefers"})).await;
    let nid = notes["id"].as_str().unwrap().to_owned();
    app.ok(&format!("/v1/memory_stores/{nid}/memories"), json!({"path": "/prefs/lang.md", "content": "Rust"})).await;
    let reference = app.ok("/v1/memory_stores", json!({"name": "Reference"})).await;
    let rid = reference["id"].as_str().unwrap().to_owned();
    app.ok(&format!("/v1/memory_stores/{rid}/memories"), json!({"path": "/facts.md", "content": "water is wet"})).await;
    let agent = app.ok("/v1/agents", json!({"name": "rememberer", "model": "claude-sonnet-4-6", "system": "Be brief.", "tools": [{"type": "agent_toolset_20260401"}]})).await;

    // bad attachments are refused and leave nothing
    for (bad, status) in [
        (json!([{"type": "memory_store", "memory_store_id": "memstore_missing"}]), StatusCode::NOT_FOUND),
        (json!([{"type": "memory_store", "memory_store_id": nid}, {"type": "memory_store", "memory_store_id": nid}]), StatusCode::BAD_REQUEST),
        (json!([{"type": "memory_store", "memory_store_id": nid, "instructions": "x".repeat(4097)}]), StatusCode::BAD_REQUEST),
        (json!([{"type": "memory_store", "memory_store_id": nid, "access": "write_only"}]), StatusCode::BAD_REQUEST),
    ] {
        let r = app.post("/v1/sessions", json!({"agent": agent["id"], "resources": bad})).await;
        assert_eq!(r.status, status, "{}", r.body);
    }

    let s = app
        .ok("/v1/sessions", json!({"agent": agent["id"], "resources": [
            {"type": "memory_store", "memory_store_id": nid, "instructions": "Keep preferences under /prefs"},
            {"type": "memory_store", "memory_store_id": rid, "access": "read_only"},
        ]}))
        .await;
    let sid = s["id"].as_str().unwrap().to_owned();
    assert_eq!(s["resources"][0], json!({
        "type": "memory_store", "memory_store_id": nid, "access": "read_write", "name": "Team Notes",
        "description": "What the team prefers", "instructions": "Keep preferences under /prefs", "mount_path": "/mnt/memory/team-notes"
    }));
    assert_eq!(s["resources"][1]["mount_path"], "/mnt/memory/reference");
    assert_eq!(s["resources"][1]["access"], "read_only");
    let del = app.delete(&format!("/v1/sessions/{sid}/resources/{nid}")).await;
    assert_eq!(del.status, StatusCode::BAD_REQUEST, "memory stores stay for the session's life");

    let r = turn(&app, &model, &sid, vec![
        ("bash", json!({"command": "cat /mnt/memory/team-notes/prefs/lang.md; echo; cat /mnt/memory/reference/facts.md"})),
        ("bash", json!({"command": "echo Python > /mnt/memory/team-notes/prefs/lang.md && mkdir -p /mnt/memory/team-notes/new && echo hi > /mnt/memory/team-notes/new/note.md && ln -s /etc/passwd /mnt/memory/team-notes/evil.md && echo ok"})),
        ("bash", json!({"command": "echo x > /mnt/memory/reference/facts.md; echo y > /mnt/memory/stray.md; true"})),
        ("write", json!({"file_path": "/mnt/memory/team-notes/todo.md", "content": "ship it"})),
        ("write", json!({"file_path": "/mnt/memory/reference/facts.md", "content": "no"})),
        ("read", json!({"file_path": "/mnt/memory/reference/facts.md"})),
    ]).await;
    assert_eq!(r[0].0, "Rust\nwater is wet", "{:?}", r[0]);
    assert!(r[1].0.contains("ok"), "{:?}", r[1]);
    assert!(r[2].0.contains("Read-only file system") && r[2].0.matches("Read-only").count() >= 2, "{:?}", r[2]);
    assert!(!r[3].1, "{:?}", r[3]);
    assert!(r[4].1 && r[4].0.contains("read-only"), "{:?}", r[4]);
    assert!(!r[5].1 && r[5].0.contains("water is wet"), "{:?}", r[5]);

    // the agent's writes are versions by the session, the link is not a memory
    let mems = memories(&app, &nid).await;
    assert_eq!(mems.keys().map(String::as_str).collect::<Vec<_>>(), ["/new/note.md", "/prefs/lang.md", "/todo.md"]);
    assert_eq!(mems["/prefs/lang.md"]["content"], "Python\n");
    assert_eq!(mems["/todo.md"]["content"], "ship it");
    let versions = app.get(&format!("/v1/memory_stores/{nid}/memory_versions?limit=20")).await.body;
    let by_session: Vec<&Value> = versions["data"].as_array().unwrap().iter().filter(|v| v["created_by"]["type"] == "session_actor").collect();
    assert_eq!(by_session.len(), 3, "{versions}");
    assert!(by_session.iter().all(|v| v["created_by"]["session_id"] == sid.as_str()));
    assert_eq!(memories(&app, &rid).await["/facts.md"]["content"], "water is wet", "the read-only store is unchanged");

    // the model was told about its mounts
    let req = model.requests().into_iter().rev().find(|r| r.path.ends_with("/messages")).unwrap();
    let system = req.body["system"].to_string();
    assert!(system.contains("Be brief.") && system.contains("/mnt/memory/team-notes") && system.contains("Keep preferences under /prefs") && system.contains("read-only"), "{system}");

    // API writes are seen by the next tool call; API deletes remove the file
    let lang = mems["/prefs/lang.md"]["id"].as_str().unwrap();
    app.ok(&format!("/v1/memory_stores/{nid}/memories/{lang}"), json!({"content": "Go"})).await;
    let note = mems["/new/note.md"]["id"].as_str().unwrap();
    assert_eq!(app.delete(&format!("/v1/memory_stores/{nid}/memories/{note}")).await.status, StatusCode::OK);
    app.ok(&format!("/v1/memory_stores/{nid}/memories"), json!({"path": "/evil.md", "content": "not through the link"})).await;
    let r = turn(&app, &model, &sid, vec![
        ("bash", json!({"command": "cat /mnt/memory/team-notes/prefs/lang.md; echo; ls /mnt/memory/team-notes/new 2>&1; ls -l /mnt/memory/team-notes/evil.md"})),
        ("bash", json!({"command": "rm /mnt/memory/team-notes/todo.md"})),
    ]).await;
    assert!(r[0].0.starts_with("Go\n") && r[0].0.contains("No such file"), "{:?}", r[0]);
    assert!(r[0].0.contains("-> /etc/passwd"), "the agent's link was not replaced by following it: {:?}", r[0]);
    assert!(!std::fs::read_to_string("/etc/passwd").unwrap().contains("not through the link"), "the server wrote through the link");
    let mems = memories(&app, &nid).await;
    assert!(!mems.contains_key("/todo.md"), "deleting the file deletes the memory: {mems:?}");
}
