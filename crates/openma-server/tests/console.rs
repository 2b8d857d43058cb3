//! The web console's accounts over real HTTP: a user made with `openma users create` signs
//! in with a password, gets an HttpOnly SameSite cookie, sees only its tenant's objects;
//! forms without the CSRF token, cross-site sign-ins, wrong passwords and too many attempts
//! are refused; signing out ends the session; a signed-out browser is sent to sign in.

mod support;

use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};
use serde_json::json;
use support::{Backend, TestApp};

const PASSWORD: &str = "a long console password";

/// A form body, as a browser sends it.
fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

trait FormPost {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self;
}

impl FormPost for reqwest::RequestBuilder {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self {
        self.header("content-type", "application/x-www-form-urlencoded").body(form(pairs))
    }
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn sign_in(app: &TestApp, http: &reqwest::Client, email: &str, password: &str) -> reqwest::Response {
    http.post(format!("{}/console/login", app.base)).form_body(&[("email", email), ("password", password)]).send().await.unwrap()
}

/// Makes `email` a member of the default tenant with `role` (password [`PASSWORD`]).
async fn member(app: &TestApp, email: &str, role: openma_core::accounts::Role) {
    let tenant = app.platform.find_tenant("default").await.unwrap();
    let hash = openma_server::console::hash_password(PASSWORD).unwrap();
    app.platform.add_member(email, &hash, &tenant.id, role).await.unwrap();
}

fn cookie_of(r: &reqwest::Response) -> String {
    let set = r.headers().get(SET_COOKIE).expect("a cookie").to_str().unwrap().to_owned();
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_sign_in_see_their_tenant_and_sign_out() {
    let app = support::spawn_app(Backend::Sqlite).await.unwrap();
    let http = browser();
    // the operator makes the account with the CLI, on the running server's database
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_openma"))
        .args(["--data-dir", app.data_dir().to_str().unwrap(), "users", "create", "--email", "Ada@Example.com", "--role", "owner"])
        .env("OPENMA_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // objects of this tenant and of another one
    let agent = app.agent("visible-agent").await;
    let sid = app.ok("/v1/sessions", json!({"agent": agent["id"], "title": "visible session"})).await["id"].as_str().unwrap().to_owned();
    let other_key = app.other_tenant("elsewhere").await;
    let hidden = app.call(reqwest::Method::POST, "/v1/agents", Some(other_key.as_str()), Some(json!({"name": "hidden-agent", "model": "claude-sonnet-4-6"}))).await;
    assert_eq!(hidden.status, StatusCode::OK);

    // signed out: every page sends to the sign-in page
    let r = http.get(format!("{}/console", app.base)).send().await.unwrap();
    assert!(r.status().is_redirection());
    assert_eq!(r.headers()[LOCATION], "/console/login");
    let r = http.get(format!("{}/", app.base)).send().await.unwrap();
    assert_eq!(r.headers()[LOCATION], "/console");
    let login = http.get(format!("{}/console/login", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(login.contains("name=\"password\"") && login.contains("autocomplete=\"current-password\""), "{login}");

    // a wrong password, an unknown e-mail and a cross-site post are refused alike
    assert_eq!(sign_in(&app, &http, "ada@example.com", "not the password").await.status(), StatusCode::UNAUTHORIZED);
    let unknown = sign_in(&app, &http, "nobody@example.com", PASSWORD).await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert!(unknown.text().await.unwrap().contains("Wrong e-mail or password."));
    let cross = http
        .post(format!("{}/console/login", app.base))
        .header("origin", "https://evil.example")
        .form_body(&[("email", "ada@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);

    // the right password (the e-mail in any case) signs in with a protected cookie
    let r = sign_in(&app, &http, "ADA@example.com", PASSWORD).await;
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(r.headers()[LOCATION], "/console");
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && !set.contains("Secure"), "{set}");
    let cookie = cookie_of(&r);
    let page = http.get(format!("{}/console", app.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let types: Vec<_> = page.headers().get_all(reqwest::header::CONTENT_TYPE).iter().collect();
    assert_eq!(types, ["text/html; charset=utf-8"], "one content type");
    let page = page.text().await.unwrap();
    assert!(page.contains(&sid) && page.contains("visible-agent") && page.contains("ada@example.com"), "{page}");
    assert!(!page.contains("hidden-agent"), "another tenant's objects are invisible");
    // behind HTTPS the cookie is Secure
    let tls = http
        .post(format!("{}/console/login", app.base))
        .header("x-forwarded-proto", "https")
        .form_body(&[("email", "ada@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert!(tls.headers()[SET_COOKIE].to_str().unwrap().contains("; Secure"));

    // signing out needs the page's CSRF token
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let forged = http.post(format!("{}/console/logout", app.base)).header("cookie", &cookie).form_body(&[("csrf", "forged")]).send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let bare = http.post(format!("{}/console/logout", app.base)).header("cookie", &cookie).form_body(&[("x", "y")]).send().await.unwrap();
    assert_eq!(bare.status(), StatusCode::FORBIDDEN);
    let out = http.post(format!("{}/console/logout", app.base)).header("cookie", &cookie).form_body(&[("csrf", csrf.as_str())]).send().await.unwrap();
    assert_eq!(out.headers()[LOCATION], "/console/login");
    assert!(out.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    let after = http.get(format!("{}/console", app.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(after.headers()[LOCATION], "/console/login", "the old cookie is dead");

    // a changed password signs every session out
    let again = cookie_of(&sign_in(&app, &http, "ada@example.com", PASSWORD).await);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_openma"))
        .args(["--data-dir", app.data_dir().to_str().unwrap(), "users", "passwd", "--email", "ada@example.com"])
        .env("OPENMA_PASSWORD", "an entirely new password")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = http.get(format!("{}/console", app.base)).header("cookie", &again).send().await.unwrap();
    assert_eq!(r.headers()[LOCATION], "/console/login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_attempts_are_rate_limited_per_email() {
    let app = support::spawn_app(Backend::Sqlite).await.unwrap();
    let http = browser();
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(sign_in(&app, &http, "guess@example.com", "wrong password here").await);
    }
    let limited = statuses.iter().find(|r| r.status() == StatusCode::TOO_MANY_REQUESTS).expect("a 429 after five attempts");
    assert!(limited.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(statuses.iter().filter(|r| r.status() == StatusCode::UNAUTHORIZED).count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_need_a_real_password_and_role() {
    let app = support::spawn_app(Backend::Sqlite).await.unwrap();
    let run = |args: &[&str], password: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_openma"))
            .args(["--data-dir", app.data_dir().to_str().unwrap(), "users"])
            .args(args)
            .env("OPENMA_PASSWORD", password)
            .output()
            .unwrap()
    };
    let short = run(&["create", "--email", "b@example.com"], "short");
    assert!(!short.status.success() && String::from_utf8_lossy(&short.stderr).contains("at least 12"));
    let role = run(&["create", "--email", "b@example.com", "--role", "king"], PASSWORD);
    assert!(!role.status.success() && String::from_utf8_lossy(&role.stderr).contains("owner, admin or member"));
    let email = run(&["create", "--email", "not-an-email"], PASSWORD);
    assert!(!email.status.success() && String::from_utf8_lossy(&email.stderr).contains("not an e-mail address"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_calls_the_api_with_its_cookie_and_csrf_token() {
    let model = openma_fake_model::FakeModel::start().await;
    let app = support::spawn_app_with_model(Backend::Sqlite, Some(model.base_url())).await.unwrap();
    member(&app, "eve@example.com", openma_core::accounts::Role::Member).await;
    let agent = app.agent("paged").await;
    let sid = app.ok("/v1/sessions", json!({"agent": agent["id"], "title": "findable"})).await["id"].as_str().unwrap().to_owned();
    let http = browser();
    let cookie = cookie_of(&sign_in(&app, &http, "eve@example.com", PASSWORD).await);

    // the sessions list searches and filters; the session page carries the timeline and the token
    let list = http.get(format!("{}/console/sessions?q=FINDABLE&status=idle", app.base)).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    assert!(list.contains(&sid), "{list}");
    let none = http.get(format!("{}/console/sessions?q=nothing-like-it", app.base)).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    assert!(none.contains("No session matches."));
    let page = http.get(format!("{}/console/sessions/{sid}", app.base)).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    let csrf = page.split("const CSRF=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    assert!(page.contains("new EventSource('/v1/sessions/'+SESSION+'/events/stream')"));

    // reads need only the cookie; changes need the token too
    let read = http.get(format!("{}/v1/sessions/{sid}", app.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let msg = json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "from the console"}]}]});
    let forged = http.post(format!("{}/v1/sessions/{sid}/events", app.base)).header("cookie", &cookie).json(&msg).send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    model.script(vec![openma_fake_model::Reply::text("hello console")]);
    let sent = http.post(format!("{}/v1/sessions/{sid}/events", app.base)).header("cookie", &cookie).header("x-csrf-token", &csrf).json(&msg).send().await.unwrap();
    assert_eq!(sent.status(), StatusCode::OK);
    // another tenant's session is not there for this member
    let other = app.other_tenant("far").await;
    let agent2 = app.call(reqwest::Method::POST, "/v1/agents", Some(other.as_str()), Some(json!({"name": "far", "model": "claude-sonnet-4-6"}))).await.body;
    let far = app.call(reqwest::Method::POST, "/v1/sessions", Some(other.as_str()), Some(json!({"agent": agent2["id"]}))).await.body["id"].as_str().unwrap().to_owned();
    assert_eq!(http.get(format!("{}/v1/sessions/{far}", app.base)).header("cookie", &cookie).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(http.get(format!("{}/console/sessions/{far}", app.base)).header("cookie", &cookie).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    // without a cookie or key the API still says 401
    assert_eq!(http.get(format!("{}/v1/sessions/{sid}", app.base)).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_with_version_diffs_and_api_keys_shown_once() {
    let app = support::spawn_app(Backend::Sqlite).await.unwrap();
    member(&app, "owner@example.com", openma_core::accounts::Role::Owner).await;
    member(&app, "member@example.com", openma_core::accounts::Role::Member).await;
    let http = browser();
    let owner = cookie_of(&sign_in(&app, &http, "owner@example.com", PASSWORD).await);
    let csrf_of = |page: &str| page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let get = |path: String, cookie: String| {
        let http = http.clone();
        let base = app.base.clone();
        async move { http.get(format!("{base}{path}")).header("cookie", cookie).send().await.unwrap() }
    };
    let empty = get("/console/agents".into(), owner.clone()).await.text().await.unwrap();
    assert!(empty.contains("No agents yet"), "{empty}");
    let csrf = csrf_of(&empty);

    // create, then make a second version from the page's form
    let made = http.post(format!("{}/console/agents", app.base)).header("cookie", &owner)
        .form_body(&[("csrf", &csrf), ("name", "writer"), ("model", "claude-sonnet-4-6"), ("system", "Be brief."), ("tools", "on")]).send().await.unwrap();
    assert!(made.status().is_redirection(), "{}", made.status());
    let path = made.headers()[LOCATION].to_str().unwrap().to_owned();
    let no_token = http.post(format!("{}{path}", app.base)).header("cookie", &owner).form_body(&[("model", "claude-sonnet-4-6")]).send().await.unwrap();
    assert_eq!(no_token.status(), StatusCode::FORBIDDEN);
    let v2 = http.post(format!("{}{path}", app.base)).header("cookie", &owner)
        .form_body(&[("csrf", &csrf), ("model", "claude-sonnet-4-6"), ("system", "Be thorough.")]).send().await.unwrap();
    assert!(v2.status().is_redirection());
    let page = get(path.clone(), owner.clone()).await.text().await.unwrap().replace("&quot;", "\"");
    assert!(page.contains("v2") && page.contains("Changes from v1 to v2"), "{page}");
    assert!(page.contains("-  \"system\": \"Be brief.\"") && page.contains("+  \"system\": \"Be thorough.\""), "a line diff: {page}");
    let api = app.get(&format!("/v1/agents/{}", path.rsplit('/').next().unwrap())).await.body;
    assert_eq!((api["version"].as_i64(), api["system"].as_str()), (Some(2), Some("Be thorough.")));
    // a bad model is a clear error, not a crash
    let bad = http.post(format!("{}/console/agents", app.base)).header("cookie", &owner)
        .form_body(&[("csrf", &csrf), ("name", ""), ("model", "claude-sonnet-4-6")]).send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // an API key is shown once, works, and can be revoked; members cannot manage keys
    let made = http.post(format!("{}/console/api-keys", app.base)).header("cookie", &owner).form_body(&[("csrf", &csrf), ("name", "ci")]).send().await.unwrap();
    assert_eq!(made.headers()["cache-control"], "no-store");
    let shown = made.text().await.unwrap();
    let secret = shown.split("<pre id=\"new-key\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    let works = app.http.get(format!("{}/v1/agents", app.base)).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(works.status(), StatusCode::OK);
    let listed = get("/console/api-keys".into(), owner.clone()).await.text().await.unwrap();
    assert!(!listed.contains(&secret), "the key is never shown again");
    let row = listed.split("<tr>").find(|r| r.contains("<td>ci</td>")).expect("the new key is listed");
    let key_id = row.split("/console/api-keys/").nth(1).unwrap().split('/').next().unwrap().to_owned();
    let member = cookie_of(&sign_in(&app, &http, "member@example.com", PASSWORD).await);
    let member_page = get("/console/api-keys".into(), member.clone()).await.text().await.unwrap();
    assert!(!member_page.contains("New key"));
    let member_csrf = csrf_of(&member_page);
    let refused = http.post(format!("{}/console/api-keys/{key_id}/revoke", app.base)).header("cookie", &member).form_body(&[("csrf", &member_csrf)]).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let revoked = http.post(format!("{}/console/api-keys/{key_id}/revoke", app.base)).header("cookie", &owner).form_body(&[("csrf", &csrf)]).send().await.unwrap();
    assert!(revoked.status().is_redirection());
    let dead = app.http.get(format!("{}/v1/agents", app.base)).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(dead.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environments_vaults_files_and_memory_pages() {
    let app = support::spawn_app(Backend::Sqlite).await.unwrap();
    member(&app, "viewer@example.com", openma_core::accounts::Role::Member).await;
    let env = app.ok("/v1/environments", json!({"name": "locked-down", "config": {"type": "cloud", "networking": {"type": "limited", "allowed_hosts": ["pypi.org"]}}})).await;
    let vault = app.ok("/v1/vaults", json!({"display_name": "team-secrets"})).await["id"].as_str().unwrap().to_owned();
    app.ok(&format!("/v1/vaults/{vault}/credentials"), json!({"display_name": "docs-token", "auth": {"type": "static_bearer", "mcp_server_url": "https://mcp.example.com/mcp", "token": "tok-never-shown-81"}})).await;
    app.ok("/v1/memory_stores", json!({"name": "notes", "description": "team notes"})).await;
    let http = browser();
    let cookie = cookie_of(&sign_in(&app, &http, "viewer@example.com", PASSWORD).await);
    let page = |path: &str| {
        let (http, url, cookie) = (http.clone(), format!("{}{path}", app.base), cookie.clone());
        async move {
            let r = http.get(url).header("cookie", cookie).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.text().await.unwrap()
        }
    };
    let envs = page("/console/environments").await;
    assert!(envs.contains("locked-down") && envs.contains("limited: pypi.org"), "{envs}");
    let one = page(&format!("/console/environments/{}", env["id"].as_str().unwrap())).await;
    assert!(one.contains("id=\"build-state\">ready"), "{one}");
    let vaults = page("/console/vaults").await;
    assert!(vaults.contains("team-secrets") && vaults.contains("docs-token (static_bearer)"), "{vaults}");
    assert!(!vaults.contains("tok-never-shown-81"), "secrets are write-only");
    assert!(page("/console/memory").await.contains("team notes"));
    assert!(page("/console/files").await.contains("No files yet."));

    // the upload form's request: multipart to the API with the cookie and the token
    let csrf = page("/console/files").await.split("const CSRF=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let boundary = "xXbOuNdArYxX";
    let body = format!("--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"hello.txt\"\r\ncontent-type: text/plain\r\n\r\nhello from the console\r\n--{boundary}--\r\n");
    let up = http
        .post(format!("{}/v1/files", app.base))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), StatusCode::OK, "{}", up.text().await.unwrap());
    let files = page("/console/files").await;
    assert!(files.contains("hello.txt"), "{files}");
    let link = files.split("href=\"/v1/files/").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let down = http.get(format!("{}/v1/files/{link}", app.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(down.text().await.unwrap(), "hello from the console");
    let forged = http
        .post(format!("{}/v1/files", app.base))
        .header("cookie", &cookie)
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_redaction_credentials_and_model_cards_from_the_console() {
    let app = support::spawn_app(Backend::Sqlite).await.unwrap();
    member(&app, "mo@example.com", openma_core::accounts::Role::Admin).await;
    let store = app.ok("/v1/memory_stores", json!({"name": "notes"})).await["id"].as_str().unwrap().to_owned();
    let mem = app.ok(&format!("/v1/memory_stores/{store}/memories"), json!({"path": "/secret-plan.md", "content": "launch on thursday"})).await["id"].as_str().unwrap().to_owned();
    // the first version becomes history, which may be redacted (the current one may not)
    app.ok(&format!("/v1/memory_stores/{store}/memories/{mem}"), json!({"content": "launch on friday"})).await;
    let vault = app.ok("/v1/vaults", json!({"display_name": "v"})).await["id"].as_str().unwrap().to_owned();
    let http = browser();
    let cookie = cookie_of(&sign_in(&app, &http, "mo@example.com", PASSWORD).await);
    let get = |path: String| {
        let (http, url, cookie) = (http.clone(), format!("{}{path}", app.base), cookie.clone());
        async move { http.get(url).header("cookie", cookie).send().await.unwrap().text().await.unwrap() }
    };
    let page = get(format!("/console/memory/{store}")).await;
    assert!(page.contains("/secret-plan.md") && page.contains("launch on friday"), "{page}");
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    // newest first: the second form redacts the older version
    let action = page.split("action=\"/console/memory/").nth(2).unwrap().split('"').next().unwrap().to_owned();
    let redacted = http.post(format!("{}/console/memory/{action}", app.base)).header("cookie", &cookie).form_body(&[("csrf", &csrf)]).send().await.unwrap();
    assert!(redacted.status().is_redirection(), "{}", redacted.status());
    let versions = app.get(&format!("/v1/memory_stores/{store}/memory_versions")).await.body;
    let v = versions["data"].as_array().unwrap().iter().find(|v| v["path"].is_null()).expect("a redacted version");
    assert_eq!(v["redacted_by"]["type"], "user_actor", "{versions}");

    // a credential added from the console is stored sealed and never shown
    let added = http
        .post(format!("{}/console/vaults/{vault}/credentials", app.base))
        .header("cookie", &cookie)
        .form_body(&[("csrf", &csrf), ("display_name", "docs"), ("mcp_server_url", "https://mcp.example.com/mcp"), ("token", "console-token-77q")])
        .send()
        .await
        .unwrap();
    assert!(added.status().is_redirection(), "{}", added.status());
    let vaults = get("/console/vaults".into()).await;
    assert!(vaults.contains("docs (static_bearer)") && !vaults.contains("console-token-77q"), "{vaults}");
    assert!(!app.get(&format!("/v1/vaults/{vault}/credentials")).await.body.to_string().contains("console-token-77q"));

    // a model card's key is write-only: the list shows only its hint
    let made = http
        .post(format!("{}/console/model-cards", app.base))
        .header("cookie", &cookie)
        .form_body(&[("csrf", &csrf), ("name", "house"), ("provider", "openai_compatible"), ("models", "llama-3.3-70b"), ("base_url", "https://llm.example.com"), ("api_key", "sk-house-key-9931")])
        .send()
        .await
        .unwrap();
    assert!(made.status().is_redirection(), "{}", made.status());
    let cards = get("/console/model-cards".into()).await;
    assert!(cards.contains("house") && cards.contains("llama-3.3-70b") && cards.contains("9931") && !cards.contains("sk-house-key"), "{cards}");
    assert!(get("/console/skills".into()).await.contains("No skills yet"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_charted_per_day_and_tabled_per_agent_and_model() {
    let model = openma_fake_model::FakeModel::start().await;
    let app = support::spawn_app_with_model(Backend::Sqlite, Some(model.base_url())).await.unwrap();
    member(&app, "ana@example.com", openma_core::accounts::Role::Member).await;
    let http = browser();
    let cookie = cookie_of(&sign_in(&app, &http, "ana@example.com", PASSWORD).await);
    let get = |path: &str| {
        let (http, url, cookie) = (http.clone(), format!("{}{path}", app.base), cookie.clone());
        async move { http.get(url).header("cookie", cookie).send().await.unwrap().text().await.unwrap() }
    };
    assert!(get("/console/usage").await.contains("No usage in the last 30 days."));
    let agent = app.agent("metered").await;
    let sid = app.ok("/v1/sessions", json!({"agent": agent["id"]})).await["id"].as_str().unwrap().to_owned();
    model.script(vec![openma_fake_model::Reply::text("counted").usage(openma_fake_model::ScriptUsage { input_tokens: 1_000_000, output_tokens: 100_000, ..Default::default() })]);
    let mut stream = support::SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    app.ok(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}]})).await;
    stream.until(support::settled).await;
    // Sonnet list prices: $3 per million input tokens, $15 per million output tokens
    let page = get("/console/usage").await;
    assert!(page.contains("<rect") && page.contains("claude-sonnet-4-6") && page.contains(agent["id"].as_str().unwrap()), "{page}");
    let total = page.split("id=\"usage-total\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    assert!(total.starts_with("$4.5"), "{total}");
    assert!(get("/console").await.contains(&total), "the dashboard shows the same figure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_two_tenants_switches_between_them() {
    let app = support::spawn_app(Backend::Sqlite).await.unwrap();
    member(&app, "two@example.com", openma_core::accounts::Role::Member).await;
    let second = app.platform.create_tenant("second").await.unwrap();
    let hash = openma_server::console::hash_password(PASSWORD).unwrap();
    app.platform.add_member("two@example.com", &hash, &second.id, openma_core::accounts::Role::Admin).await.unwrap();
    let third = app.platform.create_tenant("third").await.unwrap();
    app.agent("in-default").await;
    let http = browser();
    let cookie = cookie_of(&sign_in(&app, &http, "two@example.com", PASSWORD).await);
    let dashboard = || {
        let (http, url, cookie) = (http.clone(), format!("{}/console", app.base), cookie.clone());
        async move { http.get(url).header("cookie", cookie).send().await.unwrap().text().await.unwrap() }
    };
    let page = dashboard().await;
    assert!(page.contains("in-default") && page.contains(second.id.as_str()), "{page}");
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let switch = |tenant: String| {
        let (http, base, cookie, csrf) = (http.clone(), app.base.clone(), cookie.clone(), csrf.clone());
        async move { http.post(format!("{base}/console/tenant")).header("cookie", cookie).form_body(&[("csrf", &csrf), ("tenant", &tenant)]).send().await.unwrap() }
    };
    assert!(switch(second.id.as_str().to_owned()).await.status().is_redirection());
    let page = dashboard().await;
    assert!(!page.contains("in-default") && page.contains("admin"), "the second tenant's view: {page}");
    // a tenant the user does not belong to is refused
    assert_eq!(switch(third.id.as_str().to_owned()).await.status(), StatusCode::NOT_FOUND);
}
