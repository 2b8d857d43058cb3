//! The Skills API against the real server: uploads as `files[]` parts or one zip, SKILL.md
//! front matter, refused paths and sizes, zip bombs, name conflicts, versions and the
//! `latest` they resolve to, content downloads unzipped and compared, tenant isolation.

#[macro_use]
mod support;

use std::io::{Cursor, Read, Write};

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{Backend, Reply, TestApp, spawn_app};

backend_stories!(
    skills_round_trip_with_versions_and_isolation,
    bad_uploads_are_refused_and_leave_nothing,
    zip_uploads_are_read_and_zip_bombs_refused
);

fn skill_md(name: &str, description: &str) -> String {
    format!("---\nname: {name}\ndescription: {description}\n---\n# {name}\n\nUse it well.\n")
}

async fn upload(app: &TestApp, path: &str, files: &[(&str, &[u8])], display_name: Option<&str>) -> Reply {
    let mut parts: Vec<(&str, Option<&str>, Option<&str>, &[u8])> = Vec::new();
    if let Some(d) = display_name {
        parts.push(("display_name", None, None, d.as_bytes()));
    }
    for (name, bytes) in files {
        parts.push(("files[]", Some(name), Some("application/octet-stream"), bytes));
    }
    app.post_multipart(path, &app.key, &parts).await
}

fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).expect("a zip archive");
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let mut b = Vec::new();
        f.read_to_end(&mut b).unwrap();
        out.push((f.name().unwrap().to_string(), b));
    }
    out.sort();
    out
}

/// Every file under the blob dir.
fn blob_count(app: &TestApp) -> usize {
    fn walk(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 }).sum()
    }
    walk(&app.data_dir().join("blobs"))
}

async fn skills_round_trip_with_versions_and_isolation(app: TestApp) {
    let md = skill_md("pdf-tools", "Fills and reads PDF forms.");
    let script = b"import sys\nprint(sys.argv)\n".to_vec();
    let r = upload(&app, "/v1/skills", &[("pdf-tools/SKILL.md", md.as_bytes()), ("pdf-tools/scripts/run.py", &script)], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let skill = r.body;
    assert_eq!(skill["type"], "skill");
    let sid = skill["id"].as_str().unwrap().to_owned();
    assert!(sid.starts_with("skill_01"), "{sid}");
    assert_eq!(skill["display_name"], "pdf-tools", "derived from the front matter name");
    assert_eq!(skill["source"], json!({"type": "custom"}));
    assert_eq!(skill["created_at"], skill["updated_at"]);
    let v1 = skill["latest_version_id"].as_str().unwrap().to_owned();

    let got = app.get(&format!("/v1/skills/{sid}/versions/{v1}")).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.body["type"], "skill_version");
    assert_eq!((got.body["skill_id"].as_str(), got.body["name"].as_str()), (Some(sid.as_str()), Some("pdf-tools")));
    assert_eq!(got.body["description"], "Fills and reads PDF forms.");
    assert_eq!(app.get(&format!("/v1/skills/{sid}/versions/latest")).await.body, got.body);

    // the content comes back as a zip of the same files under the skill's name
    let (status, headers, bytes) = app.get_bytes(&format!("/v1/skills/{sid}/versions/{v1}/content"), &app.key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/zip");
    assert!(headers["content-disposition"].to_str().unwrap().contains("pdf-tools.zip"));
    assert_eq!(unzip(&bytes), vec![("pdf-tools/SKILL.md".to_owned(), md.clone().into_bytes()), ("pdf-tools/scripts/run.py".to_owned(), script.clone())]);

    // a second skill with a display name; the same name again is a 409 skill_name_taken
    let other_md = skill_md("csv-report", "Summarises CSV files.");
    let r = upload(&app, "/v1/skills", &[("csv-report/SKILL.md", other_md.as_bytes())], Some("CSV report builder")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["display_name"], "CSV report builder");
    let sid2 = r.body["id"].as_str().unwrap().to_owned();
    let blobs = blob_count(&app);
    let dup = upload(&app, "/v1/skills", &[("elsewhere/SKILL.md", md.as_bytes())], None).await;
    assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.body);
    assert_eq!(dup.body["error"]["details"]["error_code"], "skill_name_taken", "{}", dup.body);
    assert_eq!(dup.headers.get("x-should-retry").and_then(|v| v.to_str().ok()), Some("false"));
    assert_eq!(blob_count(&app), blobs, "a refused upload leaves no blob");

    // a new version moves latest; it must keep the name
    let md2 = skill_md("pdf-tools", "Fills, reads and signs PDF forms.");
    let r = upload(&app, &format!("/v1/skills/{sid}/versions"), &[("pdf-tools/SKILL.md", md2.as_bytes())], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v2 = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["description"], "Fills, reads and signs PDF forms.");
    let skill_now = app.get(&format!("/v1/skills/{sid}")).await.body;
    assert_eq!(skill_now["latest_version_id"], v2.as_str());
    assert!(skill_now["updated_at"].as_str() > skill["updated_at"].as_str());
    assert_eq!(app.get(&format!("/v1/skills/{sid}/versions/latest")).await.body["id"], v2.as_str());
    let renamed = upload(&app, &format!("/v1/skills/{sid}/versions"), &[("x/SKILL.md", skill_md("other-name", "d").as_bytes())], None).await;
    assert_eq!(renamed.status, StatusCode::BAD_REQUEST, "{}", renamed.body);
    assert_eq!(renamed.error_type(), "invalid_request_error");

    // lists: newest first, pages of one, the source filter
    assert_eq!(app.collect_ids(&format!("/v1/skills/{sid}/versions?limit=1")).await, vec![v2.clone(), v1.clone()]);
    assert_eq!(app.collect_ids("/v1/skills?limit=1").await, vec![sid2.clone(), sid.clone()]);
    assert_eq!(app.collect_ids("/v1/skills?source=custom").await.len(), 2);
    assert_eq!(app.get("/v1/skills?source=anthropic").await.body["data"], json!([]));
    assert_eq!(app.get("/v1/skills?source=nobody").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.get("/v1/skills?limit=1001").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.get("/v1/skills?limit=1000").await.status, StatusCode::OK);

    // another tenant sees nothing of it
    let other = app.other_tenant("skills-other").await;
    for (method, path) in [
        (Method::GET, format!("/v1/skills/{sid}")),
        (Method::DELETE, format!("/v1/skills/{sid}")),
        (Method::GET, format!("/v1/skills/{sid}/versions")),
        (Method::GET, format!("/v1/skills/{sid}/versions/{v1}")),
        (Method::GET, format!("/v1/skills/{sid}/versions/latest")),
        (Method::DELETE, format!("/v1/skills/{sid}/versions/{v1}")),
        (Method::GET, format!("/v1/skills/{sid}/versions/{v1}/content")),
    ] {
        let r = app.call(method.clone(), &path, Some(&other), None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(r.error_type(), "not_found_error");
    }
    assert_eq!(app.call(Method::GET, "/v1/skills", Some(&other), None).await.body["data"], json!([]));
    // names are per tenant: the other tenant may take `pdf-tools`
    let theirs = app
        .post_multipart("/v1/skills", &other, &[("files[]", Some("pdf-tools/SKILL.md"), None, md.as_bytes())])
        .await;
    assert_eq!(theirs.status, StatusCode::OK, "{}", theirs.body);

    // deleting the latest version moves latest back; the only version cannot go alone
    let del = app.delete(&format!("/v1/skills/{sid}/versions/{v2}")).await;
    assert_eq!(del.status, StatusCode::OK, "{}", del.body);
    assert_eq!(del.body, json!({"id": v2, "type": "skill_version_deleted"}));
    assert_eq!(app.get(&format!("/v1/skills/{sid}")).await.body["latest_version_id"], v1.as_str());
    assert_eq!(app.get(&format!("/v1/skills/{sid}/versions/{v2}")).await.status, StatusCode::NOT_FOUND);
    let last = app.delete(&format!("/v1/skills/{sid}/versions/{v1}")).await;
    assert_eq!(last.status, StatusCode::BAD_REQUEST, "{}", last.body);

    // deleting the skill takes its versions and their archives; its name is free again
    let blobs = blob_count(&app);
    let del = app.delete(&format!("/v1/skills/{sid}")).await;
    assert_eq!(del.body, json!({"id": sid, "type": "skill_deleted"}));
    assert_eq!(blob_count(&app), blobs - 1);
    assert_eq!(app.get(&format!("/v1/skills/{sid}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&format!("/v1/skills/{sid}/versions/{v1}/content")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.delete(&format!("/v1/skills/{sid}")).await.status, StatusCode::NOT_FOUND);
    let again = upload(&app, "/v1/skills", &[("pdf-tools/SKILL.md", md.as_bytes())], None).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(app.get("/v1/skills/skill_nope").await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&format!("/v1/skills/{sid2}/versions/skillver_nope")).await.status, StatusCode::NOT_FOUND);
}

async fn bad_uploads_are_refused_and_leave_nothing(app: TestApp) {
    let md = skill_md("good-skill", "Does good things.");
    let cases: Vec<(&str, Vec<(&str, Vec<u8>)>)> = vec![
        ("no files", vec![]),
        ("no SKILL.md", vec![("good-skill/README.md", b"hi".to_vec())]),
        ("SKILL.md not at the root", vec![("good-skill/sub/SKILL.md", md.clone().into_bytes())]),
        ("no top-level directory", vec![("SKILL.md", md.clone().into_bytes())]),
        ("two top-level directories", vec![("good-skill/SKILL.md", md.clone().into_bytes()), ("other/x.txt", b"x".to_vec())]),
        ("dot-dot", vec![("good-skill/SKILL.md", md.clone().into_bytes()), ("good-skill/../../etc/passwd", b"x".to_vec())]),
        ("absolute", vec![("/good-skill/SKILL.md", md.clone().into_bytes())]),
        ("backslash", vec![("good-skill\\SKILL.md", md.clone().into_bytes())]),
        ("no front matter", vec![("good-skill/SKILL.md", b"# just markdown".to_vec())]),
        ("no description", vec![("good-skill/SKILL.md", b"---\nname: good-skill\n---\n".to_vec())]),
        ("bad YAML", vec![("good-skill/SKILL.md", b"---\nname: [unclosed\ndescription: x\n---\n".to_vec())]),
        ("bad name", vec![("good-skill/SKILL.md", skill_md("Good_Skill", "d").into_bytes())]),
        ("reserved name", vec![("good-skill/SKILL.md", skill_md("claude-helper", "d").into_bytes())]),
        ("not UTF-8", vec![("good-skill/SKILL.md", vec![0xff, 0xfe, 0x00])]),
    ];
    for (why, files) in &cases {
        let files: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (*p, b.as_slice())).collect();
        let r = upload(&app, "/v1/skills", &files, None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{why}: {}", r.body);
        assert_eq!(r.error_type(), "invalid_request_error", "{why}");
    }
    let r = upload(&app, "/v1/skills", &[("good-skill/SKILL.md", md.as_bytes())], Some(&"x".repeat(256))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "display_name over 255: {}", r.body);
    let r = upload(&app, "/v1/skills", &[("good-skill/SKILL.md", md.as_bytes())], Some("two\nlines")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "display_name on two lines: {}", r.body);
    let r = app.post_multipart("/v1/skills", &app.key, &[("files[]", None, None, md.as_bytes())]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "a part without a filename: {}", r.body);
    let r = app.post("/v1/skills", json!({"files": []})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "JSON is not multipart: {}", r.body);

    // sizes: one file over 10 MiB is 413; too many files is 400
    let big = vec![b'a'; 10 * 1024 * 1024 + 1];
    let r = upload(&app, "/v1/skills", &[("good-skill/SKILL.md", md.as_bytes()), ("good-skill/big.bin", &big)], None).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert_eq!(r.error_type(), "request_too_large");
    let names: Vec<String> = (0..501).map(|i| format!("good-skill/f{i}.txt")).collect();
    let mut many: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), b"x".as_slice())).collect();
    many.push(("good-skill/SKILL.md", md.as_bytes()));
    let r = upload(&app, "/v1/skills", &many, None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);

    assert_eq!(app.get("/v1/skills").await.body["data"], json!([]));
    assert_eq!(blob_count(&app), 0, "refused uploads store nothing");
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

async fn zip_uploads_are_read_and_zip_bombs_refused(app: TestApp) {
    let md = skill_md("zipped-skill", "Came in a zip.");
    let archive = zip_of(&[("zipped-skill/SKILL.md", md.as_bytes()), ("zipped-skill/data/table.csv", b"a,b\n1,2\n")]);
    let r = upload(&app, "/v1/skills", &[("zipped-skill.zip", &archive)], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let sid = r.body["id"].as_str().unwrap();
    let (_, _, bytes) = app.get_bytes(&format!("/v1/skills/{sid}/versions/latest/content"), &app.key).await;
    assert_eq!(
        unzip(&bytes),
        vec![("zipped-skill/SKILL.md".to_owned(), md.clone().into_bytes()), ("zipped-skill/data/table.csv".to_owned(), b"a,b\n1,2\n".to_vec())]
    );

    // 8 MiB of zeros deflates to a few KiB: refused by its ratio before it is all inflated
    let zeros = vec![0u8; 8 * 1024 * 1024];
    let bomb = zip_of(&[("bomb/SKILL.md", skill_md("bomb", "boom").as_bytes()), ("bomb/zeros.bin", &zeros)]);
    assert!(bomb.len() < 100_000);
    let r = upload(&app, "/v1/skills", &[("bomb.zip", &bomb)], None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("zip bomb"), "{}", r.body);
    // entries that climb out of the archive's directory
    let evil = zip_of(&[("evil/SKILL.md", skill_md("evil", "e").as_bytes()), ("evil/../../x.sh", b"rm -rf /")]);
    let r = upload(&app, "/v1/skills", &[("evil.zip", &evil)], None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = upload(&app, "/v1/skills", &[("broken.zip", b"PK\x03\x04 not really")], None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(app.collect_ids("/v1/skills").await, vec![sid.to_owned()]);
}
