//! The egress proxy of one session: a Unix socket on the host, bound into the sandbox, on
//! which the bridge relays the sandbox's proxy connections. It speaks the two forms of an
//! HTTP forward proxy that clients use: `CONNECT host:port` (a tunnel, for HTTPS) and
//! absolute-URI requests (`GET http://host/path`, for plain HTTP).
//!
//! Each connection is judged by the session's [`EgressPolicy`] on the host name, then by the
//! address rule on every address the name resolves to, then connected to a checked address
//! (no second lookup: DNS rebinding cannot slip a private address in). A refusal is a `403`
//! whose plain-text body names the host and the rule; it is logged with the session id,
//! never with the request's headers or body. After the head, bytes are spliced both ways.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::time::{Instant, timeout, timeout_at};

use super::policy::{EgressPolicy, Refusal, ResolveOverrides, forbidden_class, normalize_host};

/// Largest request head read from the sandbox.
const MAX_HEAD: usize = 64 * 1024;
/// Time the sandbox gets to send a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections one session may have open through its proxy at once (more wait).
const MAX_CONNECTIONS: usize = 256;
/// Largest plain-HTTP request body read whole to put a credential in it.
const MAX_SUBSTITUTED_BODY: usize = 16 << 20;
/// Name of the socket in the session's egress directory.
pub(crate) const SOCKET_NAME: &str = "egress.sock";

/// Operator settings of every session's egress.
#[derive(Clone)]
pub struct EgressSettings {
    /// Host path of the bridge executable, bound read-only into networked sandboxes and run
    /// as `<bridge> sandbox-bridge …`: the `openma` binary itself by default.
    pub bridge: PathBuf,
    /// Test-only name overrides (exempt from the address rule); see [`ResolveOverrides`].
    pub resolve: ResolveOverrides,
    /// Time allowed to resolve and connect to an upstream host.
    pub connect_timeout: Duration,
    /// A seam on the plain-HTTP request path.
    pub hook: Option<Arc<dyn EgressHook>>,
    /// Credential substitution: where the secrets of a session come from.
    pub credentials: Option<Arc<dyn crate::intercept::CredentialSource>>,
    /// The CA whose certificates let the proxy read HTTPS to hosts that get a secret; the
    /// sandboxes of networked sessions trust it (`/etc/openma-ca-bundle.pem`).
    pub ca: Option<Arc<crate::intercept::EgressCa>>,
    /// Roots that upstream servers of intercepted HTTPS are verified against (None: the
    /// host's system roots).
    pub upstream_roots: Option<Arc<rustls::RootCertStore>>,
}

impl Default for EgressSettings {
    fn default() -> Self {
        EgressSettings {
            bridge: std::env::current_exe().unwrap_or_default(),
            resolve: ResolveOverrides::default(),
            connect_timeout: Duration::from_secs(10),
            hook: None,
            credentials: None,
            ca: None,
            upstream_roots: None,
        }
    }
}

impl std::fmt::Debug for EgressSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressSettings")
            .field("bridge", &self.bridge)
            .field("resolve", &self.resolve)
            .field("connect_timeout", &self.connect_timeout)
            .field("hook", &self.hook.as_ref().map(|_| "set"))
            .field("credentials", &self.credentials.as_ref().map(|_| "set"))
            .field("ca", &self.ca.as_ref().map(|_| "set"))
            .finish()
    }
}

/// Where an allowed request goes (fixed before any hook runs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressTarget {
    pub host: String,
    pub port: u16,
}

/// The head of a plain-HTTP request as it will be sent upstream (origin form).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequestHead {
    pub method: String,
    /// Path and query, e.g. `/simple/requests/?x=1`.
    pub path: String,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub minor_version: u8,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// An extension point of the proxy: sees (and may rewrite) every plain-HTTP request after
/// the policy allowed it and before it is sent. Tunnels (`CONNECT`) are opaque bytes today;
/// terminating TLS to rewrite HTTPS requests would add a hook of its own here.
pub trait EgressHook: Send + Sync + 'static {
    fn on_http_request(&self, session_id: &str, target: &EgressTarget, request: &mut HttpRequestHead);
}

/// A running proxy; dropping it stops accepting and removes its socket. Open connections end
/// when the sandbox (the bridge on their other end) does.
pub(crate) struct EgressProxy {
    task: tokio::task::JoinHandle<()>,
    socket: PathBuf,
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

struct Ctx {
    session_id: String,
    policy: Arc<RwLock<EgressPolicy>>,
    settings: EgressSettings,
}

impl EgressProxy {
    /// Listens on `dir/egress.sock`, connectable by `uid` only (the session's), and serves
    /// until dropped. Must be called inside a tokio runtime.
    pub(crate) fn start(
        dir: &Path,
        uid: Option<u32>,
        session_id: &str,
        policy: Arc<RwLock<EgressPolicy>>,
        settings: &EgressSettings,
    ) -> io::Result<EgressProxy> {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        let socket = dir.join(SOCKET_NAME);
        match std::fs::remove_file(&socket) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = bind_unix(dir, &socket)?;
        if let Some(uid) = uid {
            std::os::unix::fs::chown(&socket, Some(uid), Some(uid))?;
        }
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        let listener = UnixListener::from_std(listener)?;
        let ctx = Arc::new(Ctx { session_id: session_id.to_owned(), policy, settings: settings.clone() });
        let task = tokio::spawn(accept_loop(listener, ctx));
        Ok(EgressProxy { task, socket })
    }
}

/// Binds the socket, through `/proc/self/fd/N/` when its path is longer than `sun_path`
/// allows (deep data dirs).
fn bind_unix(dir: &Path, socket: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    if socket.as_os_str().len() < 100 {
        return std::os::unix::net::UnixListener::bind(socket);
    }
    let d = std::fs::File::open(dir)?;
    let short = format!("/proc/self/fd/{}/{SOCKET_NAME}", std::os::fd::AsRawFd::as_raw_fd(&d));
    let l = std::os::unix::net::UnixListener::bind(short);
    drop(d);
    l
}

async fn accept_loop(listener: UnixListener, ctx: Arc<Ctx>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let client = match listener.accept().await {
            Ok((c, _)) => c,
            Err(e) => {
                tracing::warn!(session_id = %ctx.session_id, error = %e, "egress proxy cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            handle(client, &ctx).await;
            drop(permit);
        });
    }
}

/// Why a connection could not be opened, as the HTTP status the sandbox sees.
enum OpenError {
    Refused(Refusal),
    BadGateway(String),
    TimedOut(String),
}

async fn handle(mut client: UnixStream, ctx: &Ctx) {
    let (head, rest) = match timeout(HEAD_TIMEOUT, read_head(&mut client)).await {
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) | Ok(Err(_)) => return,
        Err(_) => return reply(&mut client, 408, "Request Timeout", "openma egress proxy: no request head within 30 s").await,
    };
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    let (method, target, minor) = match req.parse(&head) {
        Ok(httparse::Status::Complete(_)) => (
            req.method.unwrap_or_default().to_owned(),
            req.path.unwrap_or_default().to_owned(),
            req.version.unwrap_or(1),
        ),
        _ => return reply(&mut client, 400, "Bad Request", "openma egress proxy: malformed request head").await,
    };
    if method.eq_ignore_ascii_case("CONNECT") {
        let Some((host, port)) = split_authority(&target) else {
            return reply(&mut client, 400, "Bad Request", "openma egress proxy: CONNECT needs host:port").await;
        };
        let mut upstream = match open(ctx, &host, port).await {
            Ok(u) => u,
            Err(e) => return refuse(&mut client, ctx, e).await,
        };
        let subs = substitutions(ctx, &host).await;
        if client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await.is_err() {
            return;
        }
        if let Some(ca) = ctx.settings.ca.as_ref().filter(|_| !subs.is_empty() && rest.is_empty()) {
            // a credential may go to this host: read the requests to put it in
            let roots = ctx.settings.upstream_roots.clone().unwrap_or_else(|| crate::intercept::upstream_roots(&[]));
            if let Err(e) = crate::intercept::intercept(client, &host, upstream, ca, roots, subs).await {
                tracing::info!(session_id = %ctx.session_id, host = %host, error = %e, "intercepted egress connection ended with an error");
            }
            return;
        }
        if !rest.is_empty() && upstream.write_all(&rest).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        return;
    }
    let Some((host, port, path)) = split_http_uri(&target) else {
        return reply(
            &mut client,
            400,
            "Bad Request",
            "openma egress proxy: send CONNECT host:port (HTTPS) or an absolute http:// URI (plain HTTP)",
        )
        .await;
    };
    let mut request = HttpRequestHead { method, path, minor_version: minor, headers: forwarded_headers(req.headers, &host, port) };
    let mut upstream = match open(ctx, &host, port).await {
        Ok(u) => u,
        Err(e) => return refuse(&mut client, ctx, e).await,
    };
    let subs = substitutions(ctx, &host).await;
    crate::intercept::substitute_headers(&mut request.headers, &subs);
    let mut rest = rest;
    if subs.iter().any(|s| s.body) {
        // a body of known length is read whole (bounded) to put the secret in; a chunked one
        // goes as it is
        let length = request.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok());
        if let Some(len) = length.filter(|l| *l <= MAX_SUBSTITUTED_BODY) {
            while rest.len() < len {
                let mut chunk = vec![0u8; (len - rest.len()).min(64 * 1024)];
                match timeout(HEAD_TIMEOUT, client.read(&mut chunk)).await {
                    Ok(Ok(n)) if n > 0 => rest.extend_from_slice(&chunk[..n]),
                    _ => return,
                }
            }
            if let Some(body) = crate::intercept::substitute_body(&rest[..len], &subs) {
                let tail = rest.split_off(len);
                rest = body;
                rest.extend_from_slice(&tail);
                for (n, v) in request.headers.iter_mut() {
                    if n.eq_ignore_ascii_case("content-length") {
                        *v = (rest.len() - tail.len()).to_string().into_bytes();
                    }
                }
            }
        }
    }
    if let Some(hook) = &ctx.settings.hook {
        hook.on_http_request(&ctx.session_id, &EgressTarget { host, port }, &mut request);
    }
    let mut out = Vec::with_capacity(head.len() + rest.len() + 32);
    out.extend_from_slice(format!("{} {} HTTP/1.{}\r\n", request.method, request.path, request.minor_version).as_bytes());
    for (name, value) in &request.headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    // one request per connection: a second request on it could name another host
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(&rest);
    if upstream.write_all(&out).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// The session's credential substitutions bound for `host` (none without a source).
async fn substitutions(ctx: &Ctx, host: &str) -> Vec<crate::intercept::Substitution> {
    match &ctx.settings.credentials {
        Some(source) => crate::intercept::for_host(&source.substitutions(&ctx.session_id).await, host),
        None => Vec::new(),
    }
}

/// The client's headers minus the hop-by-hop ones (and those its `Connection` names), with
/// a `Host` added when it sent none.
fn forwarded_headers(headers: &[httparse::Header<'_>], host: &str, port: u16) -> Vec<(String, Vec<u8>)> {
    let named: Vec<String> = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection") || h.name.eq_ignore_ascii_case("proxy-connection"))
        .flat_map(|h| String::from_utf8_lossy(h.value).split(',').map(|t| t.trim().to_ascii_lowercase()).collect::<Vec<_>>())
        .collect();
    const HOP: [&str; 7] = ["connection", "proxy-connection", "keep-alive", "proxy-authorization", "proxy-authenticate", "te", "upgrade"];
    let mut out: Vec<(String, Vec<u8>)> = headers
        .iter()
        .filter(|h| {
            let n = h.name.to_ascii_lowercase();
            !HOP.contains(&n.as_str()) && !named.contains(&n)
        })
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
        .collect();
    if !out.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        let authority = if port == 80 { host_for_uri(host) } else { format!("{}:{port}", host_for_uri(host)) };
        out.push(("Host".into(), authority.into_bytes()));
    }
    out
}

fn host_for_uri(host: &str) -> String {
    if host.contains(':') { format!("[{host}]") } else { host.to_owned() }
}

/// Reads up to the blank line ending the head: (head, bytes read past it), or None when the
/// client closed first.
async fn read_head(client: &mut UnixStream) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = memchr::memmem::find(&buf[from..], b"\r\n\r\n") {
            let end = from + i + 4;
            let rest = buf.split_off(end);
            return Ok(Some((buf, rest)));
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "request head too large"));
        }
    }
}

/// `host:port` or `[v6]:port` of a CONNECT.
fn split_authority(authority: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, p) = rest.split_once(']')?;
        (h, p.strip_prefix(':')?)
    } else {
        authority.rsplit_once(':')?
    };
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = normalize_host(host);
    (!host.is_empty() && !host.contains(['/', '@', ' '])).then_some((host, port))
}

/// `http://host[:port]/path?q` → (host, port, `/path?q`). Userinfo is not accepted.
fn split_http_uri(uri: &str) -> Option<(String, u16, String)> {
    let rest = uri.get(..7).filter(|s| s.eq_ignore_ascii_case("http://")).map(|_| &uri[7..])?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.contains('@') || authority.is_empty() {
        return None;
    }
    let (host, port) = match split_authority(authority) {
        Some(hp) => hp,
        None if !authority.ends_with(']') && authority.contains(':') => return None,
        None => (normalize_host(authority), 80),
    };
    let path = path.split('#').next().unwrap_or_default();
    let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
    Some((host, port, path))
}

/// Judges `host` and its addresses, then connects to a checked address.
async fn open(ctx: &Ctx, host: &str, port: u16) -> Result<TcpStream, OpenError> {
    let deadline = Instant::now() + ctx.settings.connect_timeout;
    let policy = ctx.policy.read().unwrap_or_else(|e| e.into_inner()).clone();
    policy.check_host(host).map_err(OpenError::Refused)?;
    let addrs: Vec<SocketAddr> = match ctx.settings.resolve.lookup(host, port) {
        Some(addr) => vec![addr],
        None => {
            let addrs: Vec<SocketAddr> = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => match timeout_at(deadline, tokio::net::lookup_host((host, port))).await {
                    Ok(Ok(a)) => a.collect(),
                    Ok(Err(e)) => return Err(OpenError::BadGateway(format!("cannot resolve {host}: {e}"))),
                    Err(_) => return Err(OpenError::TimedOut(format!("resolving {host} timed out"))),
                },
            };
            // every address must pass, not only the one we would pick
            for a in &addrs {
                if let Some(class) = forbidden_class(a.ip()) {
                    let rule = if host == a.ip().to_string() {
                        format!("it is {class}; sandboxes may only reach public addresses")
                    } else {
                        format!("it resolves to {}, {class}; sandboxes may only reach public addresses", a.ip())
                    };
                    return Err(OpenError::Refused(Refusal { host: host.to_owned(), rule }));
                }
            }
            addrs
        }
    };
    let mut last = format!("{host} has no address");
    for addr in addrs {
        match timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                tracing::debug!(session_id = %ctx.session_id, host, port, "sandbox egress connected");
                return Ok(s);
            }
            Ok(Err(e)) => last = format!("cannot connect to {host} port {port}: {e}"),
            Err(_) => {
                return Err(OpenError::TimedOut(format!(
                    "connecting to {host} port {port} took longer than {} s",
                    ctx.settings.connect_timeout.as_secs()
                )));
            }
        }
    }
    Err(OpenError::BadGateway(last))
}

async fn refuse(client: &mut UnixStream, ctx: &Ctx, e: OpenError) {
    match e {
        OpenError::Refused(r) => {
            tracing::info!(session_id = %ctx.session_id, host = %r.host, rule = %r.rule, "sandbox egress refused");
            reply(client, 403, "Forbidden", &r.to_string()).await
        }
        OpenError::BadGateway(m) => reply(client, 502, "Bad Gateway", &format!("openma egress proxy: {m}")).await,
        OpenError::TimedOut(m) => reply(client, 504, "Gateway Timeout", &format!("openma egress proxy: {m}")).await,
    }
}

async fn reply(client: &mut UnixStream, status: u16, phrase: &str, body: &str) {
    let msg = format!(
        "HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}\n",
        body.len() + 1
    );
    let _ = client.write_all(msg.as_bytes()).await;
    let _ = client.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_uris_and_authorities_parse() {
        assert_eq!(split_http_uri("http://Example.com/a?b=1"), Some(("example.com".into(), 80, "/a?b=1".into())));
        assert_eq!(split_http_uri("http://example.com:8080"), Some(("example.com".into(), 8080, "/".into())));
        assert_eq!(split_http_uri("HTTP://[::1]:81/x#frag"), Some(("::1".into(), 81, "/x".into())));
        assert_eq!(split_http_uri("http://[::1]/x"), Some(("::1".into(), 80, "/x".into())));
        assert_eq!(split_http_uri("http://user:pw@example.com/"), None);
        assert_eq!(split_http_uri("https://example.com/"), None);
        assert_eq!(split_http_uri("/relative"), None);
        assert_eq!(split_http_uri("http://example.com:x/"), None);
        assert_eq!(split_authority("example.com:443"), Some(("example.com".into(), 443)));
        assert_eq!(split_authority("[2001:db8::1]:443"), Some(("2001:db8::1".into(), 443)));
        assert_eq!(split_authority("example.com"), None);
        assert_eq!(split_authority("example.com:0"), None);
    }

    #[test]
    fn hop_by_hop_headers_are_not_forwarded() {
        let raw = [
            httparse::Header { name: "Host", value: b"a.test" },
            httparse::Header { name: "Proxy-Connection", value: b"keep-alive" },
            httparse::Header { name: "Proxy-Authorization", value: b"Basic x" },
            httparse::Header { name: "Connection", value: b"X-Private" },
            httparse::Header { name: "X-Private", value: b"1" },
            httparse::Header { name: "Accept", value: b"*/*" },
        ];
        let out = forwarded_headers(&raw, "a.test", 80);
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Host", "Accept"]);
        let out = forwarded_headers(&raw[5..], "a.test", 8080);
        assert_eq!(out.last().unwrap(), &("Host".to_string(), b"a.test:8080".to_vec()));
    }
}
