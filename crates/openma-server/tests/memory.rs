//! Memory stores on SQLite and PostgreSQL: stores, memories by path, preconditions, the
//! directory roll-up of listings, versions and redaction, racing creates, and tenants.

#[macro_use]
mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Backend, TestApp, spawn_app};

backend_stories!(
    store_lifecycle_archive_and_cascading_delete,
    memories_are_addressed_by_path_and_keep_their_id_across_renames,
    preconditions_guard_updates_and_deletes,
    listings_walk_paths_in_order_and_roll_up_directories,
    every_change_leaves_a_version_and_redaction_erases_content,
    racing_creates_on_one_path_have_exactly_one_winner,
    other_tenants_cannot_reach_stores_memories_or_versions,
    bad_memory_input_is_refused_with_400,
    the_openapi_document_covers_every_memory_endpoint,
    awkward_paths_page_identically_at_every_limit,
);

async fn store(app: &TestApp) -> String {
    app.ok("/v1/memory_stores", json!({"name": "notes"})).await["id"].as_str().unwrap().to_owned()
}

async fn memory(app: &TestApp, s: &str, path: &str, content: &str) -> Value {
    app.ok(&format!("/v1/memory_stores/{s}/memories"), json!({"path": path, "content": content})).await
}

fn sha(content: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(content.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Every item of a listing, following `next_page`: paths, with `dir ` before roll-ups.
async fn walk(app: &TestApp, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut page: Option<String> = None;
    let sep = if path.contains('?') { '&' } else { '?' };
    for _ in 0..200 {
        let url = match &page {
            Some(p) => format!("{path}{sep}page={p}"),
            None => path.to_owned(),
        };
        let r = app.get(&url).await;
        assert_eq!(r.status, StatusCode::OK, "GET {url}: {}", r.body);
        for item in r.body["data"].as_array().unwrap() {
            let p = item["path"].as_str().unwrap().to_owned();
            out.push(if item["type"] == "memory_prefix" { format!("dir {p}") } else { p });
        }
        match r.body["next_page"].as_str() {
            Some(p) => page = Some(p.to_owned()),
            None => return out,
        }
    }
    panic!("pagination did not end");
}

async fn store_lifecycle_archive_and_cascading_delete(app: TestApp) {
    let s = app.ok("/v1/memory_stores", json!({"name": "User prefs", "metadata": {"user": "u1"}})).await;
    let id = s["id"].as_str().unwrap();
    assert!(id.starts_with("memstore_"), "{s}");
    assert_eq!((s["type"].as_str(), s["description"].as_str()), (Some("memory_store"), Some("")));
    assert_eq!(s["archived_at"], Value::Null);
    let u = app.ok(&format!("/v1/memory_stores/{id}"), json!({"description": "what the user likes", "metadata": {"user": null, "k": "v"}})).await;
    assert_eq!(u["metadata"], json!({"k": "v"}));
    assert_eq!(u["name"], "User prefs", "omitted fields are kept");
    assert!(u["updated_at"].as_str() > s["updated_at"].as_str());
    assert_eq!(app.get(&format!("/v1/memory_stores/{id}")).await.body, u);
    let m = memory(&app, id, "/a.md", "hello").await;
    let mid = m["id"].as_str().unwrap();
    let archived = app.ok(&format!("/v1/memory_stores/{id}/archive"), json!(null)).await;
    assert!(archived["archived_at"].is_string());
    let again = app.ok(&format!("/v1/memory_stores/{id}/archive"), json!(null)).await;
    assert_eq!(again, archived, "archiving twice changes nothing");
    // an archived store is read-only, but readable
    for (path, body) in [
        (format!("/v1/memory_stores/{id}"), json!({"name": "x"})),
        (format!("/v1/memory_stores/{id}/memories"), json!({"path": "/b.md", "content": ""})),
        (format!("/v1/memory_stores/{id}/memories/{mid}"), json!({"content": "changed"})),
    ] {
        let r = app.post(&path, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "POST {path}: {}", r.body);
        assert_eq!(r.error_type(), "invalid_request_error");
    }
    assert_eq!(app.delete(&format!("/v1/memory_stores/{id}/memories/{mid}")).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.get(&format!("/v1/memory_stores/{id}/memories/{mid}")).await.body["content"], "hello");
    assert!(app.collect_ids("/v1/memory_stores").await.is_empty(), "archived stores are hidden by default");
    assert_eq!(app.collect_ids("/v1/memory_stores?include_archived=true").await, [id]);
    let del = app.delete(&format!("/v1/memory_stores/{id}")).await;
    assert_eq!(del.body, json!({"id": id, "type": "memory_store_deleted"}));
    for gone in [format!("/v1/memory_stores/{id}"), format!("/v1/memory_stores/{id}/memories/{mid}"), format!("/v1/memory_stores/{id}/memory_versions")] {
        let r = app.get(&gone).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "GET {gone}");
        assert_eq!(r.error_type(), "not_found_error");
    }
    assert_eq!(app.delete(&format!("/v1/memory_stores/{id}")).await.status, StatusCode::NOT_FOUND);
}

async fn memories_are_addressed_by_path_and_keep_their_id_across_renames(app: TestApp) {
    let s = store(&app).await;
    let m = memory(&app, &s, "/projects/foo/notes.md", "héllo").await;
    let id = m["id"].as_str().unwrap();
    assert!(id.starts_with("mem_") && m["memory_version_id"].as_str().unwrap().starts_with("memver_"), "{m}");
    assert_eq!(m["type"], "memory");
    assert_eq!(m["content"], Value::Null, "create defaults to view=basic");
    assert_eq!((m["content_sha256"].as_str(), m["content_size_bytes"].as_i64()), (Some(sha("héllo").as_str()), Some(6)));
    let full = app.get(&format!("/v1/memory_stores/{s}/memories/{id}")).await.body;
    assert_eq!(full["content"], "héllo", "retrieve defaults to view=full");
    let basic = app.get(&format!("/v1/memory_stores/{s}/memories/{id}?view=basic")).await.body;
    assert_eq!(basic["content"], Value::Null);
    let with = app.ok(&format!("/v1/memory_stores/{s}/memories?view=full"), json!({"path": "/empty.md", "content": ""})).await;
    assert_eq!((with["content"].as_str(), with["content_size_bytes"].as_i64()), (Some(""), Some(0)));
    // a taken path is a 409 that names its holder, and the SDKs are told not to retry it
    let dup = app.post(&format!("/v1/memory_stores/{s}/memories"), json!({"path": "/projects/foo/notes.md", "content": "x"})).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.error_type(), "memory_path_conflict_error");
    assert_eq!(dup.body["error"]["conflicting_memory_id"], id);
    assert_eq!(dup.headers["x-should-retry"], "false");
    // paths are case-sensitive
    memory(&app, &s, "/projects/foo/NOTES.md", "other").await;
    // a rename keeps the id; a rename onto a taken path is the same 409
    let renamed = app.ok(&format!("/v1/memory_stores/{s}/memories/{id}?view=full"), json!({"path": "/archive/notes.md"})).await;
    assert_eq!((renamed["id"].as_str(), renamed["path"].as_str(), renamed["content"].as_str()), (Some(id), Some("/archive/notes.md"), Some("héllo")));
    assert_ne!(renamed["memory_version_id"], m["memory_version_id"]);
    let onto = app.post(&format!("/v1/memory_stores/{s}/memories/{id}"), json!({"path": "/empty.md"})).await;
    assert_eq!(onto.status, StatusCode::CONFLICT);
    assert_eq!(onto.error_type(), "memory_path_conflict_error");
    assert_eq!(onto.body["error"]["conflicting_memory_id"], with["id"]);
    // the old path is free again
    memory(&app, &s, "/projects/foo/notes.md", "new").await;
    // deleting leaves a tombstone answer and frees the path
    let del = app.delete(&format!("/v1/memory_stores/{s}/memories/{id}")).await;
    assert_eq!(del.body, json!({"id": id, "type": "memory_deleted"}));
    assert_eq!(app.get(&format!("/v1/memory_stores/{s}/memories/{id}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.delete(&format!("/v1/memory_stores/{s}/memories/{id}")).await.status, StatusCode::NOT_FOUND);
    memory(&app, &s, "/archive/notes.md", "reborn").await;
}

async fn preconditions_guard_updates_and_deletes(app: TestApp) {
    let s = store(&app).await;
    let m = memory(&app, &s, "/p.md", "one").await;
    let id = m["id"].as_str().unwrap();
    let at = format!("/v1/memory_stores/{s}/memories/{id}");
    let guarded = |content: &str, expected: &str| json!({"content": content, "precondition": {"type": "content_sha256", "content_sha256": expected}});
    let two = app.ok(&at, guarded("two", &sha("one"))).await;
    assert_eq!(two["content_sha256"], sha("two"));
    let stale = app.post(&at, guarded("three", &sha("one"))).await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(stale.error_type(), "memory_precondition_failed_error");
    assert_eq!(stale.headers["x-should-retry"], "false");
    assert_eq!(app.get(&at).await.body["content"], "two", "a failed precondition changes nothing");
    // a retried write that already took effect succeeds without a new version
    let retried = app.ok(&at, guarded("two", &sha("one"))).await;
    assert_eq!(retried["memory_version_id"], two["memory_version_id"]);
    let bad = app.post(&at, json!({"content": "x", "precondition": {"type": "content_sha256", "content_sha256": "ABC"}})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let unknown = app.post(&at, json!({"content": "x", "precondition": {"type": "not_exists"}})).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "unknown precondition types are refused");
    let wrong = app.delete(&format!("{at}?expected_content_sha256={}", sha("one"))).await;
    assert_eq!(wrong.status, StatusCode::CONFLICT);
    assert_eq!(wrong.error_type(), "memory_precondition_failed_error");
    assert_eq!(app.get(&at).await.status, StatusCode::OK, "nothing was deleted");
    assert_eq!(app.delete(&format!("{at}?expected_content_sha256=nothex")).await.status, StatusCode::BAD_REQUEST);
    let ok = app.delete(&format!("{at}?expected_content_sha256={}", sha("two"))).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
}

async fn listings_walk_paths_in_order_and_roll_up_directories(app: TestApp) {
    let s = store(&app).await;
    let paths = ["/z.md", "/a.md", "/d/x.md", "/d/y/z.md", "/d/y/w.md", "/d.md", "/d-e/f.md", "/notes/b.md", "/notes/a.md", "/é.md"];
    for p in paths {
        memory(&app, &s, p, p).await;
    }
    let mut sorted: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
    sorted.sort(); // byte order of UTF-8
    let list = format!("/v1/memory_stores/{s}/memories");
    assert_eq!(walk(&app, &list).await, sorted);
    for limit in [1, 2, 3] {
        assert_eq!(walk(&app, &format!("{list}?limit={limit}")).await, sorted, "limit {limit}");
        assert_eq!(
            walk(&app, &format!("{list}?depth=1&limit={limit}")).await,
            ["/a.md", "dir /d-e/", "/d.md", "dir /d/", "dir /notes/", "/z.md", "/é.md"],
            "limit {limit}"
        );
    }
    assert_eq!(walk(&app, &format!("{list}?path_prefix=/d/&depth=1")).await, ["/d/x.md", "dir /d/y/"]);
    assert_eq!(walk(&app, &format!("{list}?path_prefix=/d/")).await, ["/d/x.md", "/d/y/w.md", "/d/y/z.md"]);
    assert_eq!(walk(&app, &format!("{list}?path_prefix=/d/y/&limit=1")).await, ["/d/y/w.md", "/d/y/z.md"]);
    assert!(walk(&app, &format!("{list}?path_prefix=/nothing/")).await.is_empty());
    // a page carries content only with view=full, which holds at most 20 items
    let basic = app.get(&list).await.body;
    assert!(basic["data"].as_array().unwrap().iter().all(|m| m["content"].is_null() && m["content_sha256"].is_string()));
    for i in 0..15 {
        memory(&app, &s, &format!("/bulk/{i:02}.md"), "x").await;
    }
    let full = app.get(&format!("{list}?view=full&limit=100")).await.body;
    let data = full["data"].as_array().unwrap();
    assert_eq!(data.len(), 20);
    assert!(data.iter().all(|m| m["content"].is_string()), "{full}");
    assert!(full["next_page"].is_string());
    assert_eq!(app.get(&format!("{list}?limit=100")).await.body["data"].as_array().unwrap().len(), 25);
    for bad in ["depth=2", "depth=-1", "path_prefix=/d", "path_prefix=d/", "limit=0", "limit=101", "view=everything", "page=garbage"] {
        let r = app.get(&format!("{list}?{bad}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.body);
        assert_eq!(r.error_type(), "invalid_request_error");
    }
}

async fn every_change_leaves_a_version_and_redaction_erases_content(app: TestApp) {
    let s = store(&app).await;
    let m = memory(&app, &s, "/secret.md", "password=hunter2").await;
    let id = m["id"].as_str().unwrap();
    let created_ver = m["memory_version_id"].as_str().unwrap().to_owned();
    let u = app.ok(&format!("/v1/memory_stores/{s}/memories/{id}"), json!({"content": "password=REDACTED", "path": "/safe.md"})).await;
    let other = memory(&app, &s, "/other.md", "keep").await;
    app.delete(&format!("/v1/memory_stores/{s}/memories/{id}")).await;
    let versions = format!("/v1/memory_stores/{s}/memory_versions");
    let all = app.get(&format!("{versions}?memory_id={id}")).await.body;
    let data = all["data"].as_array().unwrap();
    let ops: Vec<&str> = data.iter().map(|v| v["operation"].as_str().unwrap()).collect();
    assert_eq!(ops, ["deleted", "modified", "created"], "newest first: {all}");
    let key_id = data[0]["created_by"]["api_key_id"].as_str().unwrap();
    assert!(key_id.starts_with("apikey_"), "{all}");
    assert!(data.iter().all(|v| v["created_by"] == json!({"type": "api_actor", "api_key_id": key_id})));
    assert_eq!(data[1]["id"], u["memory_version_id"]);
    assert_eq!((data[1]["path"].as_str(), data[2]["path"].as_str()), (Some("/safe.md"), Some("/secret.md")));
    assert!(data.iter().all(|v| v["content"].is_null()), "lists default to view=basic");
    assert_eq!(data[0]["content_sha256"], Value::Null, "a deletion has no content");
    assert_eq!(data[2]["content_sha256"], sha("password=hunter2"));
    assert_eq!(app.collect_ids(&versions).await.len(), 4);
    assert_eq!(app.collect_ids(&format!("{versions}?limit=1")).await.len(), 4);
    assert_eq!(app.collect_ids(&format!("{versions}?operation=created")).await.len(), 2);
    assert_eq!(app.collect_ids(&format!("{versions}?api_key_id={key_id}")).await.len(), 4);
    assert!(app.collect_ids(&format!("{versions}?api_key_id=apikey_other")).await.is_empty());
    assert!(app.collect_ids(&format!("{versions}?session_id=sesn_x")).await.is_empty());
    assert_eq!(app.get(&format!("{versions}?operation=renamed")).await.status, StatusCode::BAD_REQUEST);
    let full = app.get(&format!("{versions}?memory_id={id}&view=full")).await.body;
    assert_eq!(full["data"][2]["content"], "password=hunter2");
    let created = app.get(&format!("{versions}/{created_ver}")).await.body;
    assert_eq!((created["type"].as_str(), created["content"].as_str()), (Some("memory_version"), Some("password=hunter2")));
    // redaction erases content, digest, size and path; who and when stay
    let r = app.ok(&format!("{versions}/{created_ver}/redact"), json!(null)).await;
    for field in ["content", "content_sha256", "content_size_bytes", "path"] {
        assert_eq!(r[field], Value::Null, "{field}: {r}");
    }
    assert!(r["redacted_at"].is_string());
    assert_eq!(r["redacted_by"], json!({"type": "api_actor", "api_key_id": key_id}));
    assert_eq!((&r["created_by"], &r["created_at"], &r["operation"]), (&created["created_by"], &created["created_at"], &created["operation"]));
    assert_eq!(app.get(&format!("{versions}/{created_ver}?view=full")).await.body, r);
    assert_eq!(app.ok(&format!("{versions}/{created_ver}/redact"), json!(null)).await, r, "redacting twice changes nothing");
    // the version holding a live memory's content cannot be redacted
    let head = other["memory_version_id"].as_str().unwrap();
    let refused = app.post(&format!("{versions}/{head}/redact"), json!(null)).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(app.get(&format!("{versions}/{head}")).await.body["content"], "keep");
    assert_eq!(app.get(&format!("{versions}/memver_nope")).await.status, StatusCode::NOT_FOUND);
    // pages of versions with their contents hold at most 20
    let oid = other["id"].as_str().unwrap();
    for i in 0..20 {
        app.ok(&format!("/v1/memory_stores/{s}/memories/{oid}"), json!({"content": format!("edit {i}")})).await;
    }
    let full = app.get(&format!("{versions}?view=full&limit=100")).await.body;
    assert_eq!(full["data"].as_array().unwrap().len(), 20);
    assert!(full["data"].as_array().unwrap().iter().all(|v| v["content"].is_string()), "{full}");
    assert_eq!(app.get(&format!("{versions}?limit=100")).await.body["data"].as_array().unwrap().len(), 24);
    assert_eq!(app.get(&format!("{versions}?view=full&limit=0")).await.status, StatusCode::BAD_REQUEST);
}

async fn racing_creates_on_one_path_have_exactly_one_winner(app: TestApp) {
    let s = store(&app).await;
    let url = format!("/v1/memory_stores/{s}/memories");
    let attempts = (0..12).map(|i| app.post(&url, json!({"path": "/race.md", "content": format!("writer {i}")})));
    let replies = futures::future::join_all(attempts).await;
    let won: Vec<&Value> = replies.iter().filter(|r| r.status == StatusCode::OK).map(|r| &r.body).collect();
    assert_eq!(won.len(), 1, "{:?}", replies.iter().map(|r| (r.status, r.body.to_string())).collect::<Vec<_>>());
    for r in replies.iter().filter(|r| r.status != StatusCode::OK) {
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
        assert_eq!(r.body["error"]["conflicting_memory_id"], won[0]["id"]);
    }
    assert_eq!(app.collect_ids(&format!("/v1/memory_stores/{s}/memory_versions")).await.len(), 1);
    // racing guarded updates: one applies, the others see a changed content
    let id = won[0]["id"].as_str().unwrap();
    let expected = won[0]["content_sha256"].as_str().unwrap();
    let at = format!("{url}/{id}");
    let updates = (0..8).map(|i| {
        app.post(&at, json!({"content": format!("update {i}"), "precondition": {"type": "content_sha256", "content_sha256": expected}}))
    });
    let replies = futures::future::join_all(updates).await;
    assert_eq!(replies.iter().filter(|r| r.status == StatusCode::OK).count(), 1);
    assert!(replies.iter().filter(|r| r.status != StatusCode::OK).all(|r| r.status == StatusCode::CONFLICT));
    assert_eq!(app.collect_ids(&format!("/v1/memory_stores/{s}/memory_versions")).await.len(), 2);
}

async fn other_tenants_cannot_reach_stores_memories_or_versions(app: TestApp) {
    let s = store(&app).await;
    let m = memory(&app, &s, "/mine.md", "private").await;
    let (mid, vid) = (m["id"].as_str().unwrap(), m["memory_version_id"].as_str().unwrap());
    let other = app.other_tenant("intruder").await;
    let theirs = app.call(Method::POST, "/v1/memory_stores", Some(&other), Some(json!({"name": "theirs"}))).await.body;
    let t = theirs["id"].as_str().unwrap();
    let base = format!("/v1/memory_stores/{s}");
    let tries = [
        (Method::GET, base.clone(), None),
        (Method::POST, base.clone(), Some(json!({"name": "stolen"}))),
        (Method::POST, format!("{base}/archive"), None),
        (Method::DELETE, base.clone(), None),
        (Method::GET, format!("{base}/memories"), None),
        (Method::POST, format!("{base}/memories"), Some(json!({"path": "/x.md", "content": ""}))),
        (Method::GET, format!("{base}/memories/{mid}"), None),
        (Method::POST, format!("{base}/memories/{mid}"), Some(json!({"content": "owned"}))),
        (Method::DELETE, format!("{base}/memories/{mid}"), None),
        (Method::GET, format!("{base}/memory_versions"), None),
        (Method::GET, format!("{base}/memory_versions/{vid}"), None),
        (Method::POST, format!("{base}/memory_versions/{vid}/redact"), None),
        // their own store does not open ours either
        (Method::GET, format!("/v1/memory_stores/{t}/memories/{mid}"), None),
        (Method::GET, format!("/v1/memory_stores/{t}/memory_versions/{vid}"), None),
        (Method::POST, format!("/v1/memory_stores/{t}/memory_versions/{vid}/redact"), None),
    ];
    for (method, path, body) in tries {
        let r = app.call(method.clone(), &path, Some(&other), body).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {path}: {}", r.body);
        assert_eq!(r.error_type(), "not_found_error");
    }
    let list = app.call(Method::GET, "/v1/memory_stores?include_archived=true", Some(&other), None).await.body;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let mine = app.get(&format!("{base}/memories/{mid}")).await.body;
    assert_eq!((mine["content"].as_str(), mine["memory_version_id"].as_str()), (Some("private"), Some(vid)));
}

async fn bad_memory_input_is_refused_with_400(app: TestApp) {
    let s = store(&app).await;
    let url = format!("/v1/memory_stores/{s}/memories");
    let deep = format!("/{}x", "a/".repeat(20));
    let long = format!("/{}", "x".repeat(1024));
    for path in ["", "no-slash.md", "/", "/dir/", "//x", "/a//b", "/./x", "/a/../b", "/e\u{301}.md", deep.as_str(), long.as_str()] {
        let r = app.post(&url, json!({"path": path, "content": "x"})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path:?}: {}", r.body);
        assert_eq!(r.error_type(), "invalid_request_error");
    }
    let at_cap = "x".repeat(102_400);
    memory(&app, &s, "/big.md", &at_cap).await;
    let over = app.post(&url, json!({"path": "/bigger.md", "content": format!("{at_cap}y")})).await;
    assert_eq!(over.status, StatusCode::BAD_REQUEST, "{}", over.body);
    assert_eq!(app.post(&url, json!({"path": "/no-content.md"})).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.post(&url, json!({"path": 7, "content": "x"})).await.status, StatusCode::BAD_REQUEST);
    // text the databases find awkward still round-trips
    let odd = "nul \u{0} tab \t emoji 🦀";
    let m = app.ok(&format!("{url}?view=full"), json!({"path": "/odd.md", "content": odd})).await;
    assert_eq!(app.get(&format!("{url}/{}", m["id"].as_str().unwrap())).await.body["content"], odd);
    for body in [json!({"name": ""}), json!({"name": "a\nb"}), json!({"name": "x".repeat(256)}), json!({"name": "n", "description": "d".repeat(1025)}),
        json!({"name": "n", "metadata": {"k": "v".repeat(513)}})] {
        let r = app.post("/v1/memory_stores", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
    }
    let cleared = app.ok(&format!("/v1/memory_stores/{s}"), json!({"description": null})).await;
    assert_eq!(cleared["description"], "");
    assert_eq!(app.post(&format!("/v1/memory_stores/{s}"), json!({"name": null})).await.status, StatusCode::BAD_REQUEST);
    // NUL cannot be stored by PostgreSQL: refused up front, never a 500
    for query in ["memory_versions?memory_id=mem_%00", "memory_versions?api_key_id=%00", "memories?path_prefix=/%00/"] {
        assert_eq!(app.get(&format!("/v1/memory_stores/{s}/{query}")).await.status, StatusCode::BAD_REQUEST, "{query}");
    }
    assert_eq!(app.post(&url, json!({"path": "/nul\u{0}.md", "content": ""})).await.status, StatusCode::BAD_REQUEST);
    for missing in ["/v1/memory_stores/memstore_nope", "/v1/memory_stores/vlt_wrongprefix", &format!("{url}/mem_nope")] {
        assert_eq!(app.get(missing).await.status, StatusCode::NOT_FOUND, "{missing}");
    }
}

/// Paths built from characters on both sides of `/` in byte order (` `, `!`, `-`, `.`
/// before it; `0`, `a`, `é` after), walked at several limits, depths and prefixes, must
/// match a listing computed here from the sorted paths.
async fn awkward_paths_page_identically_at_every_limit(app: TestApp) {
    let s = store(&app).await;
    let alphabet = ["a", "-", ".x", "0", "é", " ", "!", "ab"];
    let mut seed: u64 = 0x5eed;
    let mut next = |n: usize| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as usize % n
    };
    let mut paths = std::collections::BTreeSet::new();
    while paths.len() < 40 {
        let segments = 1 + next(3);
        let p: String = (0..segments).map(|_| format!("/{}", alphabet[next(alphabet.len())])).collect();
        // a path cannot also be a directory of another memory's path here: keep files and dirs apart
        if paths.iter().any(|q: &String| q.starts_with(&format!("{p}/")) || p.starts_with(&format!("{q}/"))) {
            continue;
        }
        paths.insert(p);
    }
    for p in &paths {
        memory(&app, &s, p, "x").await;
    }
    let list = format!("/v1/memory_stores/{s}/memories");
    for prefix in ["/", "/a/", "/-/", "/é/"] {
        let under: Vec<&String> = paths.iter().filter(|p| p.starts_with(prefix)).collect();
        let flat: Vec<String> = under.iter().map(|p| p.to_string()).collect();
        let mut rolled: Vec<String> = Vec::new();
        for p in &under {
            let rest = &p[prefix.len()..];
            let item = match rest.find('/') {
                Some(i) => format!("dir {}", &p[..prefix.len() + i + 1]),
                None => p.to_string(),
            };
            if rolled.last() != Some(&item) {
                rolled.push(item);
            }
        }
        assert!(!flat.is_empty(), "the generated paths reach {prefix}");
        if prefix == "/" {
            assert!(rolled.iter().any(|i| i.starts_with("dir ")) && rolled.len() < flat.len(), "{rolled:?}");
        }
        let q = format!("path_prefix={}", prefix.replace(' ', "%20"));
        for limit in [1, 3, 7, 100] {
            assert_eq!(walk(&app, &format!("{list}?{q}&limit={limit}")).await, flat, "{prefix} limit {limit}");
            assert_eq!(walk(&app, &format!("{list}?{q}&depth=1&limit={limit}")).await, rolled, "{prefix} depth 1 limit {limit}");
        }
    }
}

async fn the_openapi_document_covers_every_memory_endpoint(app: TestApp) {
    let doc = app.call(Method::GET, "/v1/openapi.json", None, None).await.body;
    let s = "/v1/memory_stores/{memory_store_id}";
    let endpoints = [
        ("/v1/memory_stores".to_owned(), &["get", "post"][..]),
        (s.to_owned(), &["get", "post", "delete"][..]),
        (format!("{s}/archive"), &["post"][..]),
        (format!("{s}/memories"), &["get", "post"][..]),
        (format!("{s}/memories/{{memory_id}}"), &["get", "post", "delete"][..]),
        (format!("{s}/memory_versions"), &["get"][..]),
        (format!("{s}/memory_versions/{{memory_version_id}}"), &["get"][..]),
        (format!("{s}/memory_versions/{{memory_version_id}}/redact"), &["post"][..]),
    ];
    let mut count = 0;
    for (path, methods) in endpoints {
        for m in methods {
            assert!(doc["paths"][&path][*m].is_object(), "openapi misses {m} {path}");
            count += 1;
        }
    }
    assert_eq!(count, 14, "endpoints 53-66");
    let params: Vec<&str> = doc["paths"][&format!("{s}/memories")]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["path_prefix", "depth", "limit", "page", "view"] {
        assert!(params.contains(&name), "list memories documents `{name}`: {params:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_refuses_new_memories_past_its_limit_but_keeps_existing_ones_editable() {
    // the cap is 10,000; filling it through HTTP would be slow, so the store port is driven directly
    let Some(app) = spawn_app(Backend::Sqlite).await else { return };
    let s = store(&app).await;
    let (tenant, _) = app.platform.authenticate(&app.key).await.unwrap().unwrap();
    let actor = openma_types::memory::Actor::ApiActor { api_key_id: "apikey_test".into() };
    let req = |i: usize| openma_types::memory::CreateMemoryRequest { path: format!("/m/{i}"), content: Some(String::new()) };
    let cap = openma_core::memory::MEMORIES_PER_STORE as usize;
    let mut tasks = Vec::new();
    for chunk in 0..8 {
        let platform = app.platform.clone();
        let (tenant, actor, s) = (tenant.clone(), actor.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            for i in (chunk..cap).step_by(8) {
                platform.create_memory(&tenant, &s, &req(i), &actor, false).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let over = app.post(&format!("/v1/memory_stores/{s}/memories"), json!({"path": "/one-more", "content": ""})).await;
    assert_eq!(over.status, StatusCode::BAD_REQUEST, "{}", over.body);
    let first = app.get(&format!("/v1/memory_stores/{s}/memories?limit=1")).await.body;
    let id = first["data"][0]["id"].as_str().unwrap();
    app.ok(&format!("/v1/memory_stores/{s}/memories/{id}"), json!({"content": "still editable"})).await;
}
