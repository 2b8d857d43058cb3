"""The web console on the Workers: the native server's pages (`openma-console`) served by
openma-main over D1, with the same sign-in, cookie, CSRF and tenant rules as natively
(crates/openma-server/tests/console.rs). People are added with `openma users sql` and
`wrangler d1 execute`, as docs/cloudflare.md says."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import httpx2
import pytest
from test_conformance import KEY_A, KEY_B, SECRET, SPARE_KEYS, agent_vars, fake_model, sandbox_server, script_reply, tenant_rows  # noqa: F401

REPO = Path(__file__).resolve().parents[3]
OPENMA_BIN = Path(os.environ.get("OPENMA_BIN", str(REPO / "target" / "debug" / "openma")))
PASSWORD = "a long console password 42"


def users_sql(email: str, tenant: str, role: str) -> str:
    """What the deployment guide runs: `openma users sql`, the password on stdin."""
    assert OPENMA_BIN.exists(), f"{OPENMA_BIN} is missing: cargo build -p openma-server"
    r = subprocess.run([str(OPENMA_BIN), "users", "sql", "--email", email, "--tenant", tenant, "--role", role],
                       input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert PASSWORD not in r.stdout and "$argon2id$" in r.stdout
    return r.stdout


@pytest.fixture
def main(deployment, fake_model, sandbox_server):  # noqa: F811
    deployment.apply_migrations()
    # written before the worker starts, as test_conformance's fixture does
    rows = tenant_rows("b", KEY_B) + tenant_rows("spare0", SPARE_KEYS[0])
    rows += users_sql("Ada@Example.com", "b", "owner") + users_sql("ada@example.com", "spare0", "member") + users_sql("bob@example.com", "b", "member")
    deployment.d1(rows)
    return deployment.start("main", {"PLATFORM_ROOT_SECRET": SECRET, "OPENMA_BOOTSTRAP_API_KEY": KEY_A}, bound={"agent": agent_vars(fake_model, sandbox_server)})


def sign_in(base: str, email: str, password: str = PASSWORD, **headers: str) -> httpx2.Response:
    return httpx2.post(f"{base}/console/login", data={"email": email, "password": password}, headers=headers, timeout=60.0)


def cookie_of(r: httpx2.Response) -> str:
    return r.headers["set-cookie"].split(";")[0]


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)


def test_members_sign_in_work_in_their_tenant_and_sign_out(main, fake_model):  # noqa: F811
    base = main.base_url
    api = lambda key: {"x-api-key": key}  # noqa: E731
    assert httpx2.post(f"{base}/v1/agents", json={"name": "hidden-agent", "model": "claude-sonnet-4-6"}, headers=api(KEY_A), timeout=30.0).status_code == 200
    assert httpx2.post(f"{base}/v1/agents", json={"name": "visible-agent", "model": "claude-sonnet-4-6"}, headers=api(KEY_B), timeout=30.0).status_code == 200

    r = httpx2.get(f"{base}/", timeout=30.0)
    assert r.status_code == 303 and r.headers["location"] == "/console"
    r = httpx2.get(f"{base}/console", timeout=30.0)
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    login = httpx2.get(f"{base}/console/login", timeout=30.0).text
    assert 'autocomplete="current-password"' in login

    assert sign_in(base, "ada@example.com", "not the password").status_code == 401
    unknown = sign_in(base, "nobody@example.com")
    assert unknown.status_code == 401 and "Wrong e-mail or password." in unknown.text
    assert sign_in(base, "ada@example.com", Origin="https://evil.example").status_code == 403
    r = sign_in(base, "ADA@example.com")
    assert r.status_code == 303 and r.headers["location"] == "/console", r.text
    set_cookie = r.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie and "Secure" not in set_cookie, set_cookie
    cookie = {"cookie": cookie_of(r)}
    token = cookie_of(r).split("=", 1)[1]

    dash = httpx2.get(f"{base}/console", headers=cookie, timeout=30.0)
    assert dash.status_code == 200 and dash.headers["content-type"].startswith("text/html")
    page = dash.text
    assert "visible-agent" in page and "ada@example.com" in page and "tenant_b" in page, page
    assert "hidden-agent" not in page, "another tenant's objects are invisible"
    csrf = csrf_of(page)

    # a new agent from the form; a form without the session's token is refused
    made = httpx2.post(f"{base}/console/agents", data={"csrf": csrf, "name": "console-made", "model": "claude-sonnet-4-6", "system": "Be brief.", "tools": "on"}, headers=cookie, timeout=30.0)
    assert made.status_code == 303 and made.headers["location"].startswith("/console/agents/agent_"), made.text
    agent_id = made.headers["location"].rsplit("/", 1)[1]
    assert httpx2.post(f"{base}/console/agents", data={"name": "x", "model": "m"}, headers=cookie, timeout=30.0).status_code == 403
    v2 = httpx2.post(f"{base}/console/agents/{agent_id}", data={"csrf": csrf, "model": "claude-sonnet-4-6", "system": "Be thorough."}, headers=cookie, timeout=30.0)
    assert v2.status_code == 303
    agent_page = httpx2.get(f"{base}/console/agents/{agent_id}", headers=cookie, timeout=30.0).text
    assert "Changes from v1 to v2" in agent_page and '+  &quot;system&quot;: &quot;Be thorough.&quot;' in agent_page, agent_page
    assert httpx2.get(f"{base}/v1/agents/{agent_id}", headers=api(KEY_B), timeout=30.0).json()["version"] == 2

    # a session started from the agent's page, talked to through the API with the cookie
    started = httpx2.post(f"{base}/console/sessions", data={"csrf": csrf, "agent_id": agent_id, "title": "From the console"}, headers=cookie, timeout=60.0)
    assert started.status_code == 303, started.text
    sid = started.headers["location"].rsplit("/", 1)[1]
    assert httpx2.get(f"{base}/v1/sessions/{sid}", headers=cookie, timeout=30.0).status_code == 200
    message = {"events": [{"type": "user.message", "content": [{"type": "text", "text": "hello"}]}]}
    forged = httpx2.post(f"{base}/v1/sessions/{sid}/events", json=message, headers=cookie, timeout=30.0)
    assert forged.status_code == 403 and "x-csrf-token" in forged.json()["error"]["message"]
    script_reply(fake_model, "hello from the workers console")
    sent = httpx2.post(f"{base}/v1/sessions/{sid}/events", json=message, headers={**cookie, "x-csrf-token": csrf}, timeout=30.0)
    assert sent.status_code == 200, sent.text
    deadline = time.monotonic() + 60
    while httpx2.get(f"{base}/v1/sessions/{sid}", headers=cookie, timeout=30.0).json()["status"] != "idle" or "hello from the workers console" not in httpx2.get(f"{base}/v1/sessions/{sid}/events", headers=cookie, timeout=30.0).text:
        assert time.monotonic() < deadline, "the turn did not finish"
        time.sleep(0.3)
    session_page = httpx2.get(f"{base}/console/sessions/{sid}", headers=cookie, timeout=30.0).text
    assert "From the console" in session_page and "hello from the workers console" in session_page
    assert "new EventSource('/v1/sessions/'+SESSION+'/events/stream')" in session_page
    listed = httpx2.get(f"{base}/console/sessions", params={"q": "from the CONSOLE", "status": "idle"}, headers=cookie, timeout=30.0).text
    assert sid in listed
    assert "No session matches." in httpx2.get(f"{base}/console/sessions", params={"q": "nothing like it"}, headers=cookie, timeout=30.0).text
    other = httpx2.post(f"{base}/v1/sessions", json={"agent": httpx2.get(f"{base}/v1/agents", headers=api(KEY_A), timeout=30.0).json()["data"][0]["id"]}, headers=api(KEY_A), timeout=60.0).json()["id"]
    assert httpx2.get(f"{base}/console/sessions/{other}", headers=cookie, timeout=30.0).status_code == 404
    assert httpx2.get(f"{base}/v1/sessions/{other}", headers=cookie, timeout=30.0).status_code == 404

    # every page renders
    for path in ["/console/agents", "/console/environments", "/console/vaults", "/console/files", "/console/memory",
                 "/console/skills", "/console/model-cards", "/console/usage", "/console/integrations", "/console/api-keys"]:
        r = httpx2.get(f"{base}{path}", headers=cookie, timeout=30.0)
        assert r.status_code == 200, (path, r.status_code, r.text[:500])
    assert "no-such" not in httpx2.get(f"{base}/console/nope", headers=cookie, timeout=30.0).text
    assert httpx2.get(f"{base}/console/nope", headers=cookie, timeout=30.0).status_code == 404

    # an API key made by an owner is shown once and works; a member may not make one
    made = httpx2.post(f"{base}/console/api-keys", data={"csrf": csrf, "name": "ci"}, headers=cookie, timeout=30.0)
    assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
    secret = re.search(r'<pre id="new-key">([^<]+)</pre>', made.text).group(1)
    assert httpx2.get(f"{base}/v1/agents", headers=api(secret), timeout=30.0).status_code == 200
    assert secret not in httpx2.get(f"{base}/console/api-keys", headers=cookie, timeout=30.0).text
    bob = sign_in(base, "bob@example.com")
    bob_cookie = {"cookie": cookie_of(bob)}
    bob_page = httpx2.get(f"{base}/console/api-keys", headers=bob_cookie, timeout=30.0).text
    assert "New key" not in bob_page
    assert httpx2.post(f"{base}/console/api-keys", data={"csrf": csrf_of(bob_page), "name": "nope"}, headers=bob_cookie, timeout=30.0).status_code == 403

    # a member of two tenants switches between them
    switched = httpx2.post(f"{base}/console/tenant", data={"csrf": csrf, "tenant": "tenant_spare0"}, headers=cookie, timeout=30.0)
    assert switched.status_code == 303
    assert "visible-agent" not in httpx2.get(f"{base}/console/agents", headers=cookie, timeout=30.0).text
    assert httpx2.post(f"{base}/console/tenant", data={"csrf": csrf, "tenant": "default"}, headers=cookie, timeout=30.0).status_code == 404

    # signing out ends the session for the pages and the API; neither token nor password is logged
    out = httpx2.post(f"{base}/console/logout", data={"csrf": csrf}, headers=cookie, timeout=30.0)
    assert out.status_code == 303 and out.headers["location"] == "/console/login" and "Max-Age=0" in out.headers["set-cookie"]
    assert httpx2.get(f"{base}/console", headers=cookie, timeout=30.0).headers["location"] == "/console/login", "the old cookie is dead"
    assert httpx2.get(f"{base}/v1/sessions/{sid}", headers=cookie, timeout=30.0).status_code == 401
    assert token not in main.output() and PASSWORD not in main.output()


def test_sign_in_attempts_are_throttled_per_email(main):
    base = main.base_url
    answers = [sign_in(base, "guess@example.com", "wrong password here") for _ in range(7)]
    limited = [r for r in answers if r.status_code == 429]
    assert limited, [r.status_code for r in answers]
    assert int(limited[0].headers["retry-after"]) >= 1
    assert sum(r.status_code == 401 for r in answers) == 5, [r.status_code for r in answers]
    # another e-mail is not held up by it
    assert sign_in(base, "ada@example.com").status_code == 303
