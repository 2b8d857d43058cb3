//! Sandbox networking against real bubblewrap and real HTTP: the only way out is the egress
//! proxy (through the bridge), which lets `unrestricted` reach public hosts and `limited`
//! its allowed hosts, and never loopback, private or link-local addresses; a client that
//! ignores the proxy has no route at all.
//!
//! Fake "outside" servers listen on the host's loopback and are reached by name through the
//! test-only resolution overrides (`allowed.test=127.0.0.1:PORT`), the only names exempt
//! from the address rule.

mod common;

use std::net::SocketAddr;

use common::{TestEnv, bounded};
use openma_sandbox::{EgressPolicy, LimitedEgress, ResolveOverrides};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain HTTP server on the host's loopback answering every request with
/// `hello from <name>: <request line>`, then closing.
async fn fake_site(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let line = head.lines().next().unwrap_or_default().to_owned();
                let leaked = if head.to_ascii_lowercase().contains("proxy-") { " (proxy headers leaked)" } else { "" };
                let body = format!("hello from {name}: {line}{leaked}\n");
                let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

/// A sandbox manager whose proxy resolves the given names to the given addresses.
fn env_resolving(names: &[(&str, SocketAddr)]) -> TestEnv {
    let spec: Vec<String> = names.iter().map(|(n, a)| format!("{n}={a}")).collect();
    let resolve = ResolveOverrides::parse(&spec.join(",")).unwrap();
    TestEnv::with(|c| {
        c.egress.bridge = env!("CARGO_BIN_EXE_openma-sandbox-bridge").into();
        c.egress.resolve = resolve;
    })
}

fn limited(hosts: &[&str]) -> EgressPolicy {
    EgressPolicy::Limited(LimitedEgress { allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(), ..Default::default() })
}

/// The host's own non-loopback IPv4 address (the one its default route leaves from).
fn host_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").or_else(|_| s.connect("8.8.8.8:53")).ok()?;
    Some(s.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrestricted_sandbox_reaches_outside_hosts_with_curl_python_and_connect() {
    bounded(async {
        let site = fake_site("outside").await;
        let env = env_resolving(&[("allowed.test", site)]);
        env.sandboxes.set_egress_policy("s1", &EgressPolicy::Unrestricted).unwrap();
        let out = env.bash("s1", "curl -sS --max-time 10 http://allowed.test/curl").await;
        assert!(out.contains("hello from outside: GET /curl HTTP/1.1"), "{out}");
        assert!(!out.contains("leaked"), "proxy headers must not reach the site: {out}");
        let py = "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://allowed.test/py', timeout=10).read().decode())\"";
        let out = env.bash("s1", py).await;
        assert!(out.contains("hello from outside: GET /py"), "{out}");
        // CONNECT, the way HTTPS goes
        let out = env.bash("s1", "curl -sS --max-time 10 --proxytunnel http://allowed.test/tunnel").await;
        assert!(out.contains("hello from outside: GET /tunnel"), "{out}");
        let out = env.bash("s1", "echo $HTTPS_PROXY $no_proxy").await;
        assert!(out.contains("http://127.0.0.1:3128 localhost,127.0.0.1"), "{out}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrestricted_sandbox_never_reaches_loopback_private_or_metadata_addresses() {
    bounded(async {
        let site = fake_site("host-loopback").await;
        let port = site.port();
        let env = env_resolving(&[("allowed.test", site)]);
        env.sandboxes.set_egress_policy("s1", &EgressPolicy::Unrestricted).unwrap();
        let via = "curl -sS --max-time 10 --noproxy '' -x http://127.0.0.1:3128";
        let cases = [
            (format!("{via} http://127.0.0.1:{port}/"), "loopback"),
            (format!("{via} http://localhost:{port}/"), "loopback"),
            (format!("{via} http://[::ffff:127.0.0.1]:{port}/"), "loopback"),
            (format!("{via} http://127.0.0.1:5432/"), "loopback"),
            (format!("{via} http://169.254.169.254/latest/meta-data/"), "link-local"),
            (format!("{via} http://10.0.0.1/"), "private"),
            (format!("{via} http://100.64.0.1/"), "shared"),
        ];
        for (cmd, class) in &cases {
            let out = env.bash("s1", cmd).await;
            assert!(!out.contains("hello from"), "{cmd} reached the host: {out}");
            assert!(out.contains("refused") && out.contains(class), "{cmd} is refused as {class}: {out}");
        }
        // HTTPS to the metadata address: the tunnel is refused
        let out = env.bash("s1", "curl -sS --max-time 10 https://169.254.169.254/ 2>&1; echo rc=$?").await;
        assert!(out.contains("403") && !out.contains("rc=0"), "{out}");
        // without the proxy (NO_PROXY covers 127.0.0.1): the sandbox's own loopback, empty
        let out = env.bash("s1", &format!("curl -sS --max-time 5 http://127.0.0.1:{port}/ 2>&1; echo rc=$?")).await;
        assert!(!out.contains("hello from") && !out.contains("rc=0"), "{out}");
        // the server keeps serving allowed traffic after all that
        let out = env.bash("s1", "curl -sS --max-time 10 http://allowed.test/still").await;
        assert!(out.contains("hello from host-loopback: GET /still"), "{out}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_ignores_the_proxy_has_no_route() {
    bounded(async {
        let Some(ip) = host_ip() else {
            eprintln!("skipping: this host has no non-loopback address");
            return;
        };
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let env = env_resolving(&[]);
        env.sandboxes.set_egress_policy("s1", &EgressPolicy::Unrestricted).unwrap();
        let py = format!(
            "python3 -c \"import socket\ntry:\n  socket.create_connection(('{ip}', {port}), timeout=3); print('CONNECTED')\nexcept OSError as e:\n  print('failed:', e)\""
        );
        let out = env.bash("s1", &py).await;
        assert!(out.contains("failed:") && !out.contains("CONNECTED"), "{out}");
        let out = env.bash("s1", &format!("curl -sS --noproxy '*' --max-time 5 http://{ip}:{port}/ 2>&1; echo rc=$?")).await;
        assert!(!out.contains("rc=0"), "{out}");
        // no name resolution inside the sandbox either
        let out = env.bash("s1", "getent hosts example.com; echo rc=$?").await;
        assert!(out.contains("rc=2") || out.contains("rc=1"), "{out}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limited_sandbox_reaches_only_its_allowed_hosts_and_the_policy_survives_a_restart() {
    bounded(async {
        let site = fake_site("site").await;
        let env = env_resolving(&[("allowed.test", site), ("denied.test", site), ("api.wild.test", site)]);
        env.sandboxes.set_egress_policy("s1", &limited(&["allowed.test", "*.wild.test"])).unwrap();
        let out = env.bash("s1", "curl -sS --max-time 10 http://allowed.test/a; curl -sS --max-time 10 http://api.wild.test/w").await;
        assert!(out.contains("hello from site: GET /a") && out.contains("hello from site: GET /w"), "{out}");
        let out = env.bash("s1", "curl -sS --max-time 10 -w ' status=%{http_code}' http://denied.test/x").await;
        assert!(out.contains("status=403") && out.contains("denied.test") && out.contains("allowed_hosts"), "{out}");
        assert!(!out.contains("hello from"), "{out}");
        let out = env.bash("s1", "curl -sS --max-time 10 --proxytunnel http://denied.test/x 2>&1; echo rc=$?").await;
        assert!(out.contains("403") && !out.contains("hello from"), "{out}");
        // a policy change reaches the running proxy at the next connection
        env.sandboxes.set_egress_policy("s1", &limited(&["denied.test"])).unwrap();
        let out = env.bash("s1", "curl -sS --max-time 10 http://denied.test/now; curl -sS --max-time 10 http://allowed.test/now").await;
        assert!(out.contains("hello from site: GET /now") && out.contains("allowed_hosts"), "{out}");
        // a new manager over the same root (a server restart) keeps the policy
        let again = env.restarted();
        assert_eq!(again.sandboxes.egress_policy("s1"), limited(&["denied.test"]));
        let out = again.bash("s1", "curl -sS --max-time 10 http://denied.test/after").await;
        assert!(out.contains("hello from site: GET /after"), "{out}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_without_networking_has_no_proxy_and_no_route() {
    bounded(async {
        let site = fake_site("site").await;
        let env = env_resolving(&[("allowed.test", site)]);
        let cmd = "env | grep -i _proxy; curl -sS --max-time 5 -x http://127.0.0.1:3128 http://allowed.test/ 2>&1; echo rc=$?";
        let out = env.bash("s1", cmd).await;
        assert!(!out.contains("hello from") && !out.contains("HTTP_PROXY") && !out.contains("rc=0"), "{out}");
        assert!(!env.root.join("s1").join("egress").join("egress.sock").exists());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_survives_commands_that_time_out_and_the_proxy_stops_with_the_sandbox() {
    bounded(async {
        let site = fake_site("site").await;
        let env = env_resolving(&[("allowed.test", site)]);
        env.sandboxes.set_egress_policy("s1", &EgressPolicy::Unrestricted).unwrap();
        let out = env.call("s1", "bash", serde_json::json!({"command": "sleep 30", "timeout_ms": 500})).await;
        assert!(out.is_error);
        // `wait` does not wait for the bridge (not one of the shell's jobs)
        let out = env.bash("s1", "wait; curl -sS --max-time 10 http://allowed.test/after-timeout").await;
        assert!(out.contains("GET /after-timeout"), "{out}");
        let socket = env.root.join("s1").join("egress").join("egress.sock");
        assert!(socket.exists());
        env.sandboxes.destroy("s1").await.unwrap();
        assert!(!socket.exists(), "the proxy's socket goes with the sandbox");
    })
    .await
}

/// `openssl s_server -www` on the host's loopback with a throwaway self-signed certificate;
/// killed when dropped. None when openssl is missing.
struct TlsSite {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: std::path::PathBuf,
}

impl Drop for TlsSite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

async fn tls_site() -> Option<TlsSite> {
    use std::process::{Command, Stdio};
    let dir = std::env::temp_dir().join(format!("openma-tls-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=tls.test"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    if !made.success() {
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept", &addr.to_string()])
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let site = TlsSite { child, addr, _dir: dir };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "openssl s_server did not listen within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Some(site)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_goes_through_a_connect_tunnel_end_to_end() {
    bounded(async {
        let Some(site) = tls_site().await else {
            eprintln!("skipping: openssl is not installed");
            return;
        };
        let env = env_resolving(&[("tls.test", site.addr)]);
        env.sandboxes.set_egress_policy("s1", &limited(&["tls.test"])).unwrap();
        // -k: the certificate is a throwaway one; the TLS session is end to end (the proxy sees bytes)
        let out = env.bash("s1", "curl -sSk --max-time 10 -w '\\nstatus=%{http_code}' https://tls.test/").await;
        assert!(out.contains("status=200") && out.contains("s_server"), "{out}");
        let out = env.bash("s1", "curl -sSk --max-time 10 https://tls.test:8443/ -o /dev/null -w '%{http_code}'; echo").await;
        assert!(out.contains("200"), "the override pins the port too: {out}");
    })
    .await
}
