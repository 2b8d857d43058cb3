//! The Files API and session file resources against the real server: uploads streamed to
//! the blob store, downloads, paging, tenant isolation, expiry, bad uploads; files mounted
//! read-only into a real sandbox, added and removed while the session lives; outputs
//! captured from `/mnt/session/outputs/` before the session goes idle.

#[macro_use]
mod support;

use openma_fake_model::FakeModel;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Backend, TestApp, spawn_app, spawn_app_custom, spawn_app_with_model, tool_turn as turn};

backend_stories!(files_round_trip_with_paging_and_isolation, expired_files_keep_metadata_but_not_content, bad_uploads_are_refused_and_leave_nothing);

/// Every file under the blob dir (temporary uploads included).
fn blob_files(app: &TestApp) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() { walk(&p, out) } else { out.push(p) }
        }
    }
    let mut out = Vec::new();
    walk(&app.data_dir().join("blobs"), &mut out);
    out
}

async fn files_round_trip_with_paging_and_isolation(app: TestApp) {
    let csv = b"city,temp\nOslo,-3\nLima,24\n";
    let a = app.upload("weather.csv", "text/csv", csv).await;
    assert_eq!(a["type"], "file");
    assert!(a["id"].as_str().unwrap().starts_with("file_"));
    assert_eq!((a["filename"].as_str(), a["mime_type"].as_str(), a["size_bytes"].as_u64()), (Some("weather.csv"), Some("text/csv"), Some(csv.len() as u64)));
    assert_eq!(a["downloadable"], true);
    assert_eq!(a["expires_at"], Value::Null);
    assert_eq!(a["scope"], Value::Null);
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let b = app.upload("../../etc/blob.bin", "application/octet-stream", &big).await;
    assert_eq!(b["filename"], "blob.bin", "only the last path component is kept");
    let c = app.upload_parts(&app.key, &[("expires_in_seconds", None, None, b"3600"), ("file", Some("notes.md"), None, b"# hi")]).await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    let c = c.body;
    assert_eq!(c["mime_type"], "text/markdown", "type guessed from the name when the part has none");
    let expires = c["expires_at"].as_str().unwrap().parse::<openma_types::Timestamp>().unwrap().as_micros();
    let created = c["created_at"].as_str().unwrap().parse::<openma_types::Timestamp>().unwrap().as_micros();
    assert_eq!(expires - created, 3_600_000_000);

    // metadata and bytes, streamed back whole
    let got = app.get(&format!("/v1/files/{}", a["id"].as_str().unwrap())).await;
    assert_eq!(got.body, a);
    let (status, headers, bytes) = app.get_bytes(&format!("/v1/files/{}/content", b["id"].as_str().unwrap()), &app.key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, big);
    assert_eq!(headers["content-length"], big.len().to_string().as_str());
    assert!(headers["content-disposition"].to_str().unwrap().contains("filename=\"blob.bin\""));

    // newest first; pages of one; ids[] as one page
    let ids = app.collect_ids("/v1/files?limit=1").await;
    let want: Vec<String> = [&c, &b, &a].iter().map(|f| f["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, want);
    let q = format!("/v1/files?ids[]={}&ids[]={}&ids[]={}", a["id"].as_str().unwrap(), c["id"].as_str().unwrap(), a["id"].as_str().unwrap());
    let listed = app.get(&q).await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 2, "{}", listed.body);
    assert_eq!(listed.body["next_page"], Value::Null);
    assert_eq!(app.get(&format!("{q}&limit=5")).await.status, StatusCode::BAD_REQUEST, "ids[] excludes limit");
    assert_eq!(app.get("/v1/files?limit=1001").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.get("/v1/files?limit=1000").await.status, StatusCode::OK);
    assert_eq!(app.get("/v1/files?scope_id=agent_123").await.status, StatusCode::BAD_REQUEST, "scope_id must name a session");

    // another tenant sees nothing of it
    let other = app.other_tenant("files-other").await;
    let aid = a["id"].as_str().unwrap();
    for (method, path) in [(reqwest::Method::GET, format!("/v1/files/{aid}")), (reqwest::Method::GET, format!("/v1/files/{aid}/content")), (reqwest::Method::DELETE, format!("/v1/files/{aid}"))] {
        let r = app.call(method.clone(), &path, Some(&other), None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(r.error_type(), "not_found_error");
    }
    assert_eq!(app.call(reqwest::Method::GET, "/v1/files", Some(&other), None).await.body["data"], json!([]));

    // delete: gone, bytes too
    assert_eq!(blob_files(&app).len(), 3);
    let d = app.delete(&format!("/v1/files/{aid}")).await;
    assert_eq!(d.body, json!({"id": aid, "type": "file_deleted"}));
    assert_eq!(app.get(&format!("/v1/files/{aid}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get_bytes(&format!("/v1/files/{aid}/content"), &app.key).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.delete(&format!("/v1/files/{aid}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(blob_files(&app).len(), 2, "the deleted file's bytes are removed");
}

async fn expired_files_keep_metadata_but_not_content(app: TestApp) {
    let f = app.upload("old.txt", "text/plain", b"stale").await;
    let id = f["id"].as_str().unwrap();
    // age it: the store is the admin's handle on the same database
    let tenant = app.platform.find_tenant("default").await.unwrap().id;
    let mut stored = app.platform.store.get_file(&tenant, id).await.unwrap().unwrap();
    app.platform.store.delete_file(&tenant, id).await.unwrap();
    stored.meta.expires_at = Some(openma_types::Timestamp::from_micros(stored.meta.created_at.as_micros() + 1));
    app.platform.store.insert_file(&tenant, &stored).await.unwrap();
    let r = app.call(reqwest::Method::GET, &format!("/v1/files/{id}/content"), Some(&app.key), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_type(), "not_found_error");
    assert_eq!(r.body["error"]["details"]["error_code"], "file_expired", "{}", r.body);
    assert_eq!(app.get(&format!("/v1/files/{id}")).await.status, StatusCode::OK, "metadata stays");
    // the sweep removes the bytes once
    let blobs = app.platform.clone();
    let mut platform = blobs;
    let local = openma_server::blobs::BlobUrl::Local(app.data_dir().join("blobs"));
    platform.blobs = Some(std::sync::Arc::new(openma_server::blobs::ObjectBlobs::open(&local).unwrap()));
    assert_eq!(platform.purge_expired_files(100).await.unwrap(), 1);
    assert_eq!(platform.purge_expired_files(100).await.unwrap(), 0);
    assert!(blob_files(&app).is_empty());
}

async fn bad_uploads_are_refused_and_leave_nothing(app: TestApp) {
    let none = app.upload_parts(&app.key, &[("purpose", None, None, b"x")]).await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST);
    assert!(none.body["error"]["message"].as_str().unwrap().contains("`file`"), "{}", none.body);
    for bad in [&b"60"[..], b"7776001", b"soon"] {
        let r = app.upload_parts(&app.key, &[("file", Some("a.txt"), Some("text/plain"), b"abc"), ("expires_in_seconds", None, None, bad)]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(r.error_type(), "invalid_request_error");
    }
    let two = app.upload_parts(&app.key, &[("file", Some("a"), None, b"1"), ("file", Some("b"), None, b"2")]).await;
    assert_eq!(two.status, StatusCode::BAD_REQUEST);
    let json_body = app.post("/v1/files", json!({"file": "abc"})).await;
    assert_eq!(json_body.status, StatusCode::BAD_REQUEST);
    assert_eq!(json_body.error_type(), "invalid_request_error");
    let unnamed = app.upload_parts(&app.key, &[("file", Some(""), Some("application/json"), b"{}")]).await;
    assert_eq!(unnamed.body["filename"], "unnamed.json", "{}", unnamed.body);
    assert_eq!(app.delete(&format!("/v1/files/{}", unnamed.body["id"].as_str().unwrap())).await.status, StatusCode::OK);
    assert!(blob_files(&app).is_empty(), "refused uploads left bytes behind: {:?}", blob_files(&app));
    assert_eq!(app.get("/v1/files").await.body["data"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_the_limit_are_413_and_store_nothing() {
    let app = spawn_app_custom(Backend::Sqlite, None, |o| o.max_file_mb = Some(1)).await.unwrap();
    let r = app.upload_parts(&app.key, &[("file", Some("big.bin"), None, &vec![7u8; 1024 * 1024 + 1])]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    let ok = app.upload("fits.bin", "application/octet-stream", &vec![7u8; 1024 * 1024]).await;
    assert_eq!(ok["size_bytes"], 1024 * 1024);
    assert_eq!(blob_files(&app).len(), 1);
}

// ---- sessions -----------------------------------------------------------------------------

fn bwrap_available() -> bool {
    openma_sandbox::Sandboxes::check().is_ok()
}

async fn scoped(app: &TestApp, sid: &str) -> Vec<Value> {
    app.get(&format!("/v1/files?scope_id={sid}")).await.body["data"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounted_files_are_read_only_in_the_sandbox_and_outputs_come_back_as_files() {
    if !bwrap_available() {
        assert!(std::env::var_os("CI").is_none(), "CI must install bubblewrap");
        return;
    }
    let model = FakeModel::start().await;
    let app = spawn_app_with_model(Backend::Sqlite, Some(model.base_url())).await.unwrap();
    let data = app.upload("data.csv", "text/csv", b"a,b\n1,2\n").await;
    let fid = data["id"].as_str().unwrap();
    let agent = app.ok("/v1/agents", json!({"name": "analyst", "model": "claude-sonnet-4-6", "tools": [{"type": "agent_toolset_20260401"}]})).await;

    // bad resources are refused before anything is created
    for (bad, status) in [
        (json!([{"type": "file", "file_id": "file_missing"}]), StatusCode::NOT_FOUND),
        (json!([{"type": "file", "file_id": fid, "mount_path": "/../../etc/passwd"}]), StatusCode::BAD_REQUEST),
        (json!([{"type": "file", "file_id": fid, "mount_path": "/x"}, {"type": "file", "file_id": fid, "mount_path": "/x"}]), StatusCode::CONFLICT),
        (json!([{"type": "github_repository", "url": "https://github.com/a/b"}]), StatusCode::BAD_REQUEST),
    ] {
        let r = app.post("/v1/sessions", json!({"agent": agent["id"], "resources": bad})).await;
        assert_eq!(r.status, status, "{bad}: {}", r.body);
    }
    assert_eq!(app.get("/v1/sessions").await.body["data"], json!([]));

    let s = app.ok("/v1/sessions", json!({"agent": agent["id"], "resources": [{"type": "file", "file_id": fid, "mount_path": "/data.csv"}]})).await;
    let sid = s["id"].as_str().unwrap().to_owned();
    let res = &s["resources"][0];
    assert_eq!(res["type"], "file");
    assert_eq!(res["mount_path"], "/mnt/session/uploads/data.csv");
    assert!(res["id"].as_str().unwrap().starts_with("sesrsc_"));
    let copy = res["file_id"].as_str().unwrap().to_owned();
    assert_ne!(copy, fid, "the session mounts its own copy");
    let meta = app.get(&format!("/v1/files/{copy}")).await.body;
    assert_eq!(meta["scope"], json!({"id": sid, "type": "session"}));
    assert_eq!(app.get("/v1/files").await.body["data"].as_array().unwrap().len(), 1, "copies are listed under their scope only");

    let r = turn(&app, &model, &sid, vec![
        ("bash", json!({"command": "cat /mnt/session/uploads/data.csv; echo hacked > /mnt/session/uploads/data.csv; rm -f /mnt/session/uploads/data.csv; ls /mnt/session/uploads"})),
        ("read", json!({"file_path": "/mnt/session/uploads/data.csv"})),
        ("write", json!({"file_path": "/mnt/session/uploads/data.csv", "content": "x"})),
        ("edit", json!({"file_path": "/mnt/session/uploads/data.csv", "old_string": "1", "new_string": "9"})),
        ("bash", json!({"command": "mkdir -p /mnt/session/outputs/charts && wc -l < /mnt/session/uploads/data.csv > /mnt/session/outputs/charts/count.txt && ln -s /etc/passwd /mnt/session/outputs/passwd && mkfifo /mnt/session/outputs/pipe"})),
        ("write", json!({"file_path": "/mnt/session/outputs/report.md", "content": "# Report\nrows: 2\n"})),
    ]).await;
    assert!(r[0].0.contains("1,2") && r[0].0.contains("Read-only file system") && r[0].0.contains("data.csv"), "{}", r[0].0);
    assert!(!r[1].1 && r[1].0.contains("1,2"), "the read tool reaches mounted files: {:?}", r[1]);
    assert!(r[2].1 && r[2].0.contains("read-only"), "{:?}", r[2]);
    assert!(r[3].1 && r[3].0.contains("read-only"), "{:?}", r[3]);
    assert!(!r[4].1 && !r[5].1, "{:?}", r);
    let (status, _, bytes) = app.get_bytes(&format!("/v1/files/{copy}/content"), &app.key).await;
    assert_eq!((status, bytes.as_slice()), (StatusCode::OK, &b"a,b\n1,2\n"[..]), "the mounted file is unchanged");

    // outputs are listed as soon as the session is idle: no link, no fifo
    let files = scoped(&app, &sid).await;
    let mut names: Vec<&str> = files.iter().map(|f| f["filename"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["count.txt", "data.csv", "report.md"], "{files:?}");
    let report = files.iter().find(|f| f["filename"] == "report.md").unwrap().clone();
    assert_eq!(report["mime_type"], "text/markdown");
    let (_, _, bytes) = app.get_bytes(&format!("/v1/files/{}/content", report["id"].as_str().unwrap()), &app.key).await;
    assert_eq!(bytes, b"# Report\nrows: 2\n");

    // an unchanged output is not captured again; a changed one replaces its capture
    turn(&app, &model, &sid, vec![("bash", json!({"command": "echo 3 > /mnt/session/outputs/charts/count.txt"}))]).await;
    let again = scoped(&app, &sid).await;
    assert_eq!(again.len(), 3);
    assert!(again.iter().any(|f| f["id"] == report["id"]), "unchanged: same file");
    let count = again.iter().find(|f| f["filename"] == "count.txt").unwrap();
    assert!(!files.iter().any(|f| f["id"] == count["id"]), "changed: a new capture");
    assert_eq!(app.get_bytes(&format!("/v1/files/{}/content", count["id"].as_str().unwrap()), &app.key).await.2, b"3\n");

    // files come and go while the session lives
    let extra = app.upload("extra.txt", "text/plain", b"more").await;
    let added = app.ok(&format!("/v1/sessions/{sid}/resources"), json!({"type": "file", "file_id": extra["id"]})).await;
    let path = format!("/mnt/session/uploads/{}", extra["id"].as_str().unwrap());
    assert_eq!(added["mount_path"], path.as_str());
    let dup = app.post(&format!("/v1/sessions/{sid}/resources"), json!({"type": "file", "file_id": extra["id"]})).await;
    assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.body);
    let listed = app.get(&format!("/v1/sessions/{sid}/resources")).await.body;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    assert_eq!(app.get(&format!("/v1/sessions/{sid}/resources?limit=1")).await.body["data"][0]["mount_path"], "/mnt/session/uploads/data.csv");
    let rid = added["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/v1/sessions/{sid}/resources/{rid}")).await.body, added);
    let rot = app.post(&format!("/v1/sessions/{sid}/resources/{rid}"), json!({"authorization_token": "ghp_x"})).await;
    assert_eq!(rot.status, StatusCode::BAD_REQUEST, "files have no token to rotate");
    let r = turn(&app, &model, &sid, vec![("bash", json!({"command": format!("cat {path}")}))]).await;
    assert_eq!(r[0].0.trim(), "more");
    assert_eq!(app.delete(&format!("/v1/sessions/{sid}/resources/{rid}")).await.body, json!({"id": rid, "type": "session_resource_deleted"}));
    let r = turn(&app, &model, &sid, vec![("bash", json!({"command": format!("cat {path}")}))]).await;
    assert!(r[0].0.contains("No such file"), "{}", r[0].0);
    assert_eq!(app.get(&format!("/v1/files/{}", added["file_id"].as_str().unwrap())).await.status, StatusCode::NOT_FOUND);

    // the original can go; the session keeps its copy. Deleting the session takes its files.
    assert_eq!(app.delete(&format!("/v1/files/{fid}")).await.status, StatusCode::OK);
    assert_eq!(app.get_bytes(&format!("/v1/files/{copy}/content"), &app.key).await.2, b"a,b\n1,2\n");
    assert_eq!(app.delete(&format!("/v1/sessions/{sid}")).await.status, StatusCode::OK);
    assert_eq!(app.get(&format!("/v1/files/{copy}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&format!("/v1/files/{}", report["id"].as_str().unwrap())).await.status, StatusCode::NOT_FOUND);
    let left: Vec<_> = blob_files(&app);
    assert_eq!(left.len(), 1, "only extra.txt's bytes remain: {left:?}");
}
