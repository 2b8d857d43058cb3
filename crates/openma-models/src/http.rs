//! The HTTP side shared by both adapters: building the client, sending a streaming
//! request, and turning the answer into a [`ModelStream`] or a [`ModelError`].

use std::time::Duration;

use futures::StreamExt;
use openma_core::model::{ModelError, ModelStream, PermanentKind};
use reqwest::RequestBuilder;
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

use crate::errors;
use crate::stream::{self, Decoder};

/// How long to wait for a TCP (and TLS) connection to a provider.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub use crate::wire::DEFAULT_IDLE_TIMEOUT;

/// Install rustls' `ring` provider as the process default, once. With the `tls` feature,
/// reqwest is built without a provider of its own (to avoid aws-lc-rs' C build) and
/// **panics when any `reqwest::Client` is built before a provider is installed**, so a
/// binary that enables `tls` calls this first thing in `main` (and test support before
/// building clients). Without the `tls` feature it does nothing.
pub fn install_tls_provider() {
    #[cfg(feature = "tls")]
    {
        // Err means a provider is already installed, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A client fit for model calls: a connect timeout but no overall timeout, since an
/// answer may stream for minutes; silence is caught by the adapters' idle timeout.
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    install_tls_provider();
    reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).build()
}

/// Send a streaming request and decode its SSE body. Returns once the status is known;
/// every error message, here and later in the stream, has the API key redacted.
pub(crate) async fn open_stream<D: Decoder>(
    provider: &'static str,
    request: RequestBuilder,
    decoder: D,
    idle: Duration,
    api_key: &SecretString,
) -> Result<ModelStream, ModelError> {
    let redact = |e| errors::redact(e, api_key.expose_secret());
    let response = match tokio::time::timeout(idle, request.send()).await {
        Err(_) => return Err(redact(errors::idle_timeout(provider, idle, "response headers"))),
        Ok(Err(e)) => return Err(redact(errors::from_transport(provider, &e))),
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if !status.is_success() {
        let headers = response.headers().clone();
        let body = read_error_body(response, idle).await;
        return Err(redact(errors::from_status(provider, status, &headers, &body)));
    }
    let api_key = api_key.clone();
    let events = stream::decode(provider, response.bytes_stream(), decoder, idle)
        .map(move |item| item.map_err(|e| errors::redact(e, api_key.expose_secret())));
    Ok(events.boxed())
}

/// The start of an error body, for its message. A body that stalls or breaks yields what
/// arrived so far: the status alone already decides the error kind.
async fn read_error_body(response: reqwest::Response, idle: Duration) -> String {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while body.len() < errors::MAX_ERROR_BODY {
        match tokio::time::timeout(idle, chunks.next()).await {
            Ok(Some(Ok(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(errors::MAX_ERROR_BODY);
    String::from_utf8_lossy(&body).into_owned()
}

/// An API key as a header value marked sensitive (so reqwest's `Debug` hides it). A key
/// that cannot be a header value is a configuration error, reported without the key.
pub(crate) fn secret_header(provider: &str, api_key: &SecretString) -> Result<HeaderValue, ModelError> {
    let mut value = HeaderValue::from_str(api_key.expose_secret()).map_err(|_| ModelError::Permanent {
        kind: PermanentKind::Authentication,
        message: format!("{provider}: the API key contains characters not allowed in an HTTP header"),
    })?;
    value.set_sensitive(true);
    Ok(value)
}

pub(crate) use crate::wire::endpoint;

#[cfg(test)]
mod tests {
    use super::endpoint;

    #[test]
    fn endpoint_does_not_double_v1() {
        assert_eq!(
            endpoint("https://api.openai.com", "chat/completions"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            endpoint("https://api.openai.com/", "chat/completions"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(endpoint("http://h:1/v1", "chat/completions"), "http://h:1/v1/chat/completions");
        assert_eq!(endpoint("http://h:1/v1/", "/messages"), "http://h:1/v1/messages");
        assert_eq!(endpoint("http://h:1/proxy", "messages"), "http://h:1/proxy/v1/messages");
    }
}
