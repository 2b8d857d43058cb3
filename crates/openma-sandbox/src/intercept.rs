//! Credential substitution at egress. A sandbox holds only opaque placeholders for its
//! `environment_variable` credentials; the egress proxy puts the real secret in their place
//! in requests to the credential's allowed hosts, in the enabled locations (headers, body),
//! and nowhere else. A placeholder in a disabled location, or bound for another host, is
//! sent as it is.
//!
//! HTTPS is rewritten by terminating the sandbox's TLS at the proxy with a certificate for
//! the requested host, issued by a per-deployment CA ([`EgressCa`]) that only the sandboxes
//! trust (its certificate is in their CA bundle); the request then goes upstream over a new
//! TLS connection verified against the host's system roots. Tunnels to hosts without a
//! substitution stay opaque bytes.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Largest request body held in memory to substitute a placeholder in it.
const MAX_BODY: usize = 16 << 20;

/// One credential as the proxy applies it (the sandbox protocol's type, so a sandbox server
/// is given exactly what the proxy applies). `secret` never leaves the process except in a
/// request to one of `hosts`.
pub use openma_types::sandbox::CredentialSubstitution as Substitution;

/// Where the proxy learns a session's substitutions: looked up for every connection, so a
/// rotated or archived credential applies at once.
#[async_trait::async_trait]
pub trait CredentialSource: Send + Sync + 'static {
    async fn substitutions(&self, session_id: &str) -> Vec<Substitution>;
}

/// The substitutions that apply to requests bound for `host`.
pub fn for_host(subs: &[Substitution], host: &str) -> Vec<Substitution> {
    subs.iter().filter(|s| s.applies_to(host) && (s.header || s.body)).cloned().collect()
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    if from.is_empty() || memchr::memmem::find(hay, from).is_none() {
        return None;
    }
    let mut out = Vec::with_capacity(hay.len() + to.len());
    let mut rest = hay;
    while let Some(i) = memchr::memmem::find(rest, from) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(to);
        rest = &rest[i + from.len()..];
    }
    out.extend_from_slice(rest);
    Some(out)
}

/// Puts the secrets in place of their placeholders in header values (where enabled).
pub fn substitute_headers(headers: &mut [(String, Vec<u8>)], subs: &[Substitution]) {
    for (_, value) in headers.iter_mut() {
        for s in subs.iter().filter(|s| s.header) {
            if let Some(v) = replace_all(value, s.placeholder.as_bytes(), s.secret.as_bytes()) {
                *value = v;
            }
        }
    }
}

/// Puts the secrets in place of their placeholders in a body (where enabled).
pub fn substitute_body(body: &[u8], subs: &[Substitution]) -> Option<Vec<u8>> {
    let mut current: Option<Vec<u8>> = None;
    for s in subs.iter().filter(|s| s.body) {
        let hay = current.as_deref().unwrap_or(body);
        if let Some(v) = replace_all(hay, s.placeholder.as_bytes(), s.secret.as_bytes()) {
            current = Some(v);
        }
    }
    current
}

/// The per-deployment CA that issues the certificates of intercepted hosts. Its key stays
/// in the data dir (mode 0600); only sandboxes trust its certificate.
pub struct EgressCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    leaves: Mutex<HashMap<String, Arc<rustls::ServerConfig>>>,
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name.push(DnType::CommonName, "openma sandbox egress CA");
    params.distinguished_name.push(DnType::OrganizationName, "openma");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

impl EgressCa {
    /// Loads the CA from `dir` (`ca.pem`, `ca.key`), creating it on first use.
    pub fn load_or_create(dir: &Path) -> io::Result<EgressCa> {
        let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
        let bad = |e: rcgen::Error| io::Error::other(e.to_string());
        if let (Ok(cert_pem), Ok(key_pem)) = (std::fs::read_to_string(&cert_path), std::fs::read_to_string(&key_path)) {
            let key = KeyPair::from_pem(&key_pem).map_err(bad)?;
            return Ok(EgressCa { cert_pem, issuer: Issuer::new(ca_params().map_err(bad)?, key), leaves: Mutex::default() });
        }
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let key = KeyPair::generate().map_err(bad)?;
        let params = ca_params().map_err(bad)?;
        let cert = params.self_signed(&key).map_err(bad)?;
        let tmp = dir.join("ca.key.tmp");
        std::fs::write(&tmp, key.serialize_pem())?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, &key_path)?;
        std::fs::write(&cert_path, cert.pem())?;
        Ok(EgressCa { cert_pem: cert.pem(), issuer: Issuer::new(params, key), leaves: Mutex::default() })
    }

    /// The CA certificate (PEM), for the sandboxes' CA bundle.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The TLS configuration presented to the sandbox for `host` (issued once, cached).
    fn server_config(&self, host: &str) -> io::Result<Arc<rustls::ServerConfig>> {
        if let Some(c) = self.leaves.lock().unwrap_or_else(|e| e.into_inner()).get(host) {
            return Ok(c.clone());
        }
        let bad = |e: rcgen::Error| io::Error::other(e.to_string());
        let key = KeyPair::generate().map_err(bad)?;
        let mut params = CertificateParams::new(vec![host.to_owned()]).map_err(bad)?;
        params.distinguished_name.push(DnType::CommonName, host);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).map_err(bad)?;
        let chain = vec![cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(io::Error::other)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        let mut leaves = self.leaves.lock().unwrap_or_else(|e| e.into_inner());
        if leaves.len() > 1024 {
            leaves.clear();
        }
        leaves.insert(host.to_owned(), config.clone());
        Ok(config)
    }
}

/// The roots an intercepting proxy verifies upstream servers against: the host's system
/// roots, plus `extra` (PEM; for tests with their own CA).
pub fn upstream_roots(extra: &[String]) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    for pem in extra {
        for der in pem_certs(pem) {
            let _ = roots.add(der);
        }
    }
    Arc::new(roots)
}

fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    use base64::Engine;
    let mut out = Vec::new();
    let mut inside = None::<String>;
    for line in pem.lines() {
        match (line.trim(), inside.as_mut()) {
            ("-----BEGIN CERTIFICATE-----", _) => inside = Some(String::new()),
            ("-----END CERTIFICATE-----", Some(b64)) => {
                if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64.as_bytes()) {
                    out.push(CertificateDer::from(der));
                }
                inside = None;
            }
            (l, Some(b64)) => b64.push_str(l),
            _ => {}
        }
    }
    out
}

/// Serves one intercepted tunnel to `host`: TLS toward the sandbox with a certificate the CA
/// issues for `host`; each HTTP/1.1 request has the secrets of `subs` put in place of their
/// placeholders (enabled locations only) and goes to `upstream` (already connected to a
/// checked address) over TLS verified against `roots`.
pub async fn intercept<S>(client: S, host: &str, upstream: TcpStream, ca: &EgressCa, roots: Arc<rustls::RootCertStore>, subs: Vec<Substitution>) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(host)?);
    let inner = acceptor.accept(client).await?;
    let mut client_config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(host.to_owned()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let outer = tokio_rustls::TlsConnector::from(Arc::new(client_config)).connect(name, upstream).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(outer)).await.map_err(io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let sender = Arc::new(tokio::sync::Mutex::new(sender));
    let subs = Arc::new(subs);
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let (sender, subs) = (sender.clone(), subs.clone());
        async move { forward(req, &sender, &subs).await }
    });
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(inner), service)
        .await
        .map_err(io::Error::other)
}

type Sender = tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<Full<Bytes>>>;

async fn forward(req: hyper::Request<Incoming>, sender: &Sender, subs: &[Substitution]) -> Result<hyper::Response<Incoming>, io::Error> {
    let (mut parts, body) = req.into_parts();
    let mut headers: Vec<(String, Vec<u8>)> = parts.headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec())).collect();
    substitute_headers(&mut headers, subs);
    let body = Limited::new(body, MAX_BODY).collect().await.map_err(|e| io::Error::other(e.to_string()))?.to_bytes();
    let body = match substitute_body(&body, subs) {
        Some(b) => Bytes::from(b),
        None => body,
    };
    parts.headers.clear();
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (hyper::header::HeaderName::from_bytes(k.as_bytes()), hyper::header::HeaderValue::from_bytes(&v)) {
            parts.headers.append(k, v);
        }
    }
    if parts.headers.contains_key(hyper::header::CONTENT_LENGTH) || !body.is_empty() {
        parts.headers.insert(hyper::header::CONTENT_LENGTH, hyper::header::HeaderValue::from(body.len()));
        parts.headers.remove(hyper::header::TRANSFER_ENCODING);
    }
    let req = hyper::Request::from_parts(parts, Full::new(body));
    let mut sender = sender.lock().await;
    sender.ready().await.map_err(io::Error::other)?;
    sender.send_request(req).await.map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(hosts: Option<&[&str]>, header: bool, body: bool) -> Substitution {
        Substitution {
            placeholder: "PH_123".into(),
            secret: "s3cret".into(),
            hosts: hosts.map(|h| h.iter().map(|s| s.to_string()).collect()),
            header,
            body,
        }
    }

    #[test]
    fn substitutions_apply_to_their_hosts_and_locations_only() {
        let subs = vec![sub(Some(&["api.example.com", "*.corp.test"]), true, false)];
        assert_eq!(for_host(&subs, "api.example.com").len(), 1);
        assert_eq!(for_host(&subs, "x.corp.test").len(), 1);
        assert!(for_host(&subs, "corp.test").is_empty());
        assert!(for_host(&subs, "evil.example.com").is_empty());
        let mut headers = vec![("authorization".to_owned(), b"Bearer PH_123".to_vec()), ("x".to_owned(), b"PH_123 PH_123".to_vec())];
        substitute_headers(&mut headers, &subs);
        assert_eq!(headers[0].1, b"Bearer s3cret");
        assert_eq!(headers[1].1, b"s3cret s3cret");
        // the body location is disabled: the placeholder stays
        assert_eq!(substitute_body(b"token=PH_123", &subs), None);
        assert_eq!(substitute_body(b"token=PH_123", &[sub(None, false, true)]).as_deref(), Some(&b"token=s3cret"[..]));
        assert!(!format!("{:?}", subs[0]).contains("s3cret"));
    }

    #[test]
    fn the_ca_persists_and_issues_leaves() {
        let dir = std::env::temp_dir().join(format!("openma-ca-{}", ulid::Ulid::new()));
        let ca = EgressCa::load_or_create(&dir).unwrap();
        let again = EgressCa::load_or_create(&dir).unwrap();
        assert_eq!(ca.cert_pem(), again.cert_pem());
        assert_eq!(std::fs::metadata(dir.join("ca.key")).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(again.server_config("api.example.com").is_ok());
        assert_eq!(pem_certs(ca.cert_pem()).len(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }
}
