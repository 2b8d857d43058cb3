//! The built-in toolset end to end: the scripted model writes a Python program, runs it
//! with bash, edits it, greps and reads it, in a real bubblewrap sandbox; and tries to
//! escape it.

mod support;

use openma_fake_model::{FakeModel, Reply};
use serde_json::{Value, json};
use support::{Backend, SseReader, TestApp, settled, spawn_app_with_model};

fn bwrap_available() -> bool {
    openma_sandbox::Sandboxes::check().is_ok()
}

/// Runs one turn in which the model calls `calls` in order, then ends; returns the
/// tool results in order.
async fn turn(app: &TestApp, model: &FakeModel, sid: &str, calls: Vec<(&str, Value)>) -> Vec<Value> {
    let n = calls.len();
    let mut script: Vec<Reply> = calls.into_iter().map(|(name, input)| Reply::tool_use(name, input)).collect();
    script.push(Reply::text("done"));
    model.script(script);
    let mut stream = SseReader::open(app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    app.post(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]})).await;
    let events = stream.until(settled).await;
    assert_eq!(events.last().unwrap().data["stop_reason"]["type"], "end_turn", "{:?}", events.iter().map(|e| &e.event).collect::<Vec<_>>());
    let results: Vec<Value> = events.into_iter().filter(|e| e.event == "agent.tool_result").map(|e| e.data).collect();
    assert_eq!(results.len(), n);
    results
}

fn text(r: &Value) -> String {
    r["content"].as_array().unwrap().iter().filter_map(|b| b["text"].as_str()).collect::<Vec<_>>().join("\n")
}

async fn session(app: &TestApp) -> String {
    let a = app.ok("/v1/agents", json!({"name": "coder", "model": "claude-sonnet-4-6", "tools": [{"type": "agent_toolset_20260401"}]})).await;
    app.ok("/v1/sessions", json!({"agent": a["id"]})).await["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_writes_runs_edits_greps_and_reads_code_in_its_sandbox() {
    if !bwrap_available() {
        assert!(std::env::var_os("CI").is_none(), "CI must install bubblewrap");
        return;
    }
    let model = FakeModel::start().await;
    let app = spawn_app_with_model(Backend::Sqlite, Some(model.base_url())).await.unwrap();
    let sid = session(&app).await;
    let r = turn(&app, &model, &sid, vec![
        ("write", json!({"file_path": "/workspace/app/hello.py", "content": "import os\nprint('hello', os.environ.get('GREETING', 'nobody'))\n"})),
        ("bash", json!({"command": "cd app && export GREETING=world"})),
        ("bash", json!({"command": "pwd && python3 hello.py"})),
    ]).await;
    assert_eq!(r[0]["is_error"], false, "{}", r[0]);
    let out = text(&r[2]);
    assert!(out.contains("/workspace/app") && out.contains("hello world"), "cwd and env persist between bash calls: {out}");
    let r = turn(&app, &model, &sid, vec![
        ("edit", json!({"file_path": "/workspace/app/hello.py", "old_string": "'hello'", "new_string": "'goodbye'"})),
        ("bash", json!({"command": "python3 hello.py > out.txt; echo $?"})),
        ("grep", json!({"pattern": "goodbye", "path": "/workspace"})),
        ("glob", json!({"pattern": "**/*.py"})),
        ("read", json!({"file_path": "/workspace/app/out.txt"})),
    ]).await;
    assert!(r.iter().all(|x| x["is_error"] == false), "{r:?}");
    assert!(text(&r[2]).contains("hello.py"), "grep: {}", text(&r[2]));
    assert!(text(&r[3]).contains("app/hello.py"), "glob: {}", text(&r[3]));
    assert!(text(&r[4]).contains("goodbye world"), "read: {}", text(&r[4]));
    // the workspace lives as long as the session
    let dir = app.data_dir().join("sandboxes").join(&sid);
    assert!(dir.exists());
    app.delete(&format!("/v1/sessions/{sid}")).await;
    assert!(!dir.exists(), "deleting the session deletes its workspace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_the_agent_does_not_offer_is_never_run_whatever_the_model_asks() {
    if !bwrap_available() {
        assert!(std::env::var_os("CI").is_none(), "CI must install bubblewrap");
        return;
    }
    let model = FakeModel::start().await;
    let app = spawn_app_with_model(Backend::Sqlite, Some(model.base_url())).await.unwrap();
    let tools = json!([{"type": "agent_toolset_20260401", "default_config": {"enabled": false}, "configs": [{"name": "read", "enabled": true}]}]);
    let a = app.ok("/v1/agents", json!({"name": "reader", "model": "claude-sonnet-4-6", "tools": tools})).await;
    let sid = app.ok("/v1/sessions", json!({"agent": a["id"]})).await["id"].as_str().unwrap().to_owned();
    let r = turn(&app, &model, &sid, vec![
        ("bash", json!({"command": "echo ran > /workspace/ran"})),
        ("write", json!({"file_path": "/workspace/written", "content": "x"})),
        ("read", json!({"file_path": "/workspace/ran"})),
    ]).await;
    for (i, name) in [(0, "bash"), (1, "write")] {
        assert_eq!(r[i]["is_error"], true, "{}", r[i]);
        assert_eq!(text(&r[i]), format!("`{name}` is not a tool of this agent."));
    }
    assert_eq!(r[2]["is_error"], true, "read runs, and finds nothing: {}", r[2]);
    let workspace = app.data_dir().join("sandboxes").join(&sid);
    let mut stack = vec![workspace];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            assert!(!["ran", "written"].contains(&entry.file_name().to_str().unwrap_or_default()), "{:?}", entry.path());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_cannot_see_the_server_or_other_sessions() {
    if !bwrap_available() {
        assert!(std::env::var_os("CI").is_none(), "CI must install bubblewrap");
        return;
    }
    let model = FakeModel::start().await;
    let app = spawn_app_with_model(Backend::Sqlite, Some(model.base_url())).await.unwrap();
    let data = app.data_dir();
    let victim = session(&app).await;
    turn(&app, &model, &victim, vec![("write", json!({"file_path": "/workspace/secret.txt", "content": "victim-data-31337"}))]).await;
    let attacker = session(&app).await;
    let db = data.join("openma.db");
    let other = data.join("sandboxes").join(&victim).join("workspace").join("secret.txt");
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    let r = turn(&app, &model, &attacker, vec![
        ("bash", json!({"command": format!("cat {} {} 2>&1; ls /root /home 2>&1; env; echo END", db.display(), other.display())})),
        ("read", json!({"file_path": db.display().to_string()})),
        ("read", json!({"file_path": "../../../../openma.db"})),
        ("bash", json!({"command": format!("ln -s {} /workspace/link; cat /workspace/link 2>&1; echo END", other.display())})),
        ("read", json!({"file_path": "/workspace/link"})),
        ("bash", json!({"command": format!("(exec 3<>/dev/tcp/127.0.0.1/{port}) 2>&1 && echo CONNECTED; (exec 3<>/dev/tcp/169.254.169.254/80) 2>&1 && echo METADATA; echo END")})),
    ]).await;
    let all: String = r.iter().map(text).collect::<Vec<_>>().join("\n");
    assert!(!all.contains("test-root-secret"), "the root secret leaked");
    assert!(!all.contains("sk-ant-fake-test-key") && !all.contains("OPENMA_"), "server configuration leaked into the sandbox environment: {all}");
    assert!(!all.contains("victim-data-31337"), "another session's workspace leaked: {all}");
    assert!(!all.contains("SQLite format"), "the database leaked");
    assert!(!all.contains("CONNECTED") && !all.contains("METADATA"), "the sandbox reached the network: {all}");
    assert_eq!(r[1]["is_error"], true);
    assert_eq!(r[2]["is_error"], true);
    assert_eq!(r[4]["is_error"], true, "a symlink out of the workspace is not followed: {}", r[4]);
    let h = app.get("/health").await;
    assert_eq!(h.body["status"], "ok", "the server stays healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_limits_reach_the_sandbox() {
    if !bwrap_available() {
        assert!(std::env::var_os("CI").is_none(), "CI must install bubblewrap");
        return;
    }
    let model = FakeModel::start().await;
    let app = support::spawn_app_custom(Backend::Sqlite, Some(model.base_url()), |o| o.sandbox.command_timeout_secs = Some(1)).await.unwrap();
    let sid = session(&app).await;
    let t = std::time::Instant::now();
    let r = turn(&app, &model, &sid, vec![("bash", json!({"command": "sleep 30"})), ("bash", json!({"command": "echo still-here"}))]).await;
    assert!(t.elapsed() < std::time::Duration::from_secs(15), "the 1 s default timeout applied: {:?}", t.elapsed());
    assert_eq!(r[0]["is_error"], true, "{}", r[0]);
    assert!(text(&r[1]).contains("still-here"), "the shell survives the timeout");
}

/// Sandbox time goes to the ledger once per tool run, sourced by the tool use: wall time at
/// no charge, CPU time at the sandbox CPU price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_wall_and_cpu_time_are_metered_per_tool_run() {
    if !bwrap_available() {
        assert!(std::env::var_os("CI").is_none(), "CI must install bubblewrap");
        return;
    }
    let model = FakeModel::start().await;
    let app = spawn_app_with_model(Backend::Sqlite, Some(model.base_url())).await.unwrap();
    let sid = session(&app).await;
    turn(&app, &model, &sid, vec![
        // 0.6 s of CPU (however long a loaded machine takes to give it), then 1.5 s asleep
        ("bash", json!({"command": "python3 -c 'import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass'; sleep 1.5; echo done"})),
        ("bash", json!({"command": "true"})),
    ]).await;
    let report = app.get("/v1/usage?group_by[]=kind&group_by[]=session").await.body;
    let line = |k: &str| report["data"].as_array().unwrap().iter().find(|l| l["kind"] == k).cloned().unwrap_or_default();
    let wall = line("sandbox_wall_ms")["quantity"].as_i64().unwrap();
    let cpu = line("sandbox_cpu_ms")["quantity"].as_i64().unwrap();
    assert!((2_000..30_000).contains(&wall), "wall {wall} ms: {report}");
    assert!((500..=wall).contains(&cpu), "cpu {cpu} ms of {wall} ms wall: {report}");
    assert_eq!(line("sandbox_cpu_ms")["amount_micros"].as_i64().unwrap(), cpu * 50_000 / 3_600_000, "{report}");
    assert_eq!(line("sandbox_wall_ms")["amount_micros"], 0);
    // one wall row per bash run: two runs, two sources (their tool uses)
    let tenant = app.platform.find_tenant("default").await.unwrap().id;
    let rows = app.platform.store.ledger_after(&tenant, 0, i64::MAX, 1000).await.unwrap();
    let walls: Vec<&str> = rows.iter().filter(|(_, e)| e.kind == "sandbox_wall_ms").map(|(_, e)| e.source.as_str()).collect();
    assert_eq!(walls.len(), 2, "{rows:?}");
    assert!(walls[0] != walls[1] && walls.iter().all(|s| s.starts_with("sevt_")));
}

/// An agent's custom skills are installed read-only at `/mnt/skills/<name>/` and listed in
/// the system prompt; references that cannot work are refused when the agent is saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skills_are_installed_read_only_and_announced() {
    if !bwrap_available() {
        assert!(std::env::var_os("CI").is_none(), "CI must install bubblewrap");
        return;
    }
    let model = FakeModel::start().await;
    let app = spawn_app_with_model(Backend::Sqlite, Some(model.base_url())).await.unwrap();
    let md = "---\nname: csv-report\ndescription: Turns CSV files into a short report.\n---\n# CSV report\nRun scripts/report.py.\n";
    let skill = app
        .post_multipart("/v1/skills", &app.key, &[
            ("files[]", Some("csv-report/SKILL.md"), None, md.as_bytes()),
            ("files[]", Some("csv-report/scripts/report.py"), None, b"print('report')\n"),
        ])
        .await;
    assert_eq!(skill.status, reqwest::StatusCode::OK, "{}", skill.body);
    let sk = skill.body["id"].as_str().unwrap().to_owned();
    let toolset = json!([{"type": "agent_toolset_20260401"}]);
    for (bad, status) in [
        (json!({"skills": [{"type": "custom", "skill_id": "skill_missing"}], "tools": toolset}), reqwest::StatusCode::NOT_FOUND),
        (json!({"skills": [{"type": "anthropic", "skill_id": "xlsx"}], "tools": toolset}), reqwest::StatusCode::BAD_REQUEST),
        (json!({"skills": [{"type": "custom", "skill_id": sk}], "tools": [{"type": "agent_toolset_20260401", "configs": [{"name": "read", "enabled": false}]}]}), reqwest::StatusCode::BAD_REQUEST),
    ] {
        let mut body = json!({"name": "skilled", "model": "claude-sonnet-4-6"});
        body.as_object_mut().unwrap().extend(bad.as_object().unwrap().clone());
        let r = app.post("/v1/agents", body).await;
        assert_eq!(r.status, status, "{}", r.body);
    }
    let agent = app.ok("/v1/agents", json!({"name": "skilled", "model": "claude-sonnet-4-6", "tools": toolset, "skills": [{"type": "custom", "skill_id": sk}]})).await;
    assert_eq!(agent["skills"], json!([{"type": "custom", "skill_id": sk, "version": "latest"}]));
    let sid = app.ok("/v1/sessions", json!({"agent": agent["id"]})).await["id"].as_str().unwrap().to_owned();
    let r = turn(&app, &model, &sid, vec![
        ("bash", json!({"command": "cat /mnt/skills/csv-report/SKILL.md && python3 /mnt/skills/csv-report/scripts/report.py && echo x > /mnt/skills/csv-report/SKILL.md"})),
        ("read", json!({"file_path": "/mnt/skills/csv-report/SKILL.md"})),
        ("write", json!({"file_path": "/mnt/skills/csv-report/SKILL.md", "content": "x"})),
    ]).await;
    let bash = text(&r[0]);
    assert!(bash.contains("# CSV report") && bash.contains("report\n") && (bash.contains("Read-only") || bash.contains("Permission denied")), "{bash}");
    assert!(text(&r[1]).contains("Run scripts/report.py"), "{}", r[1]);
    assert_eq!(r[2]["is_error"], true, "{}", r[2]);
    let req = model.requests().into_iter().rev().find(|r| r.path.ends_with("/messages")).unwrap();
    let system = req.body["system"].to_string();
    assert!(system.contains("/mnt/skills/csv-report/SKILL.md") && system.contains("Turns CSV files into a short report."), "{system}");
}
