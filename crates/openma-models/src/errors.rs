//! The one place where provider failures become [`ModelError`]s: HTTP statuses, error
//! types named inside a stream, transport errors and cut streams. Both adapters go through
//! here so that a 429 from Anthropic and a 429 from OpenAI are retried the same way.

use std::time::{Duration, SystemTime};

use openma_core::model::{ModelError, PermanentKind, TransientKind};
use http::StatusCode;
use http::header::HeaderMap;
use serde_json::Value;

/// Error bodies are read only this far: enough for the message, never a whole page.
pub(crate) const MAX_ERROR_BODY: usize = 16 * 1024;

fn transient(kind: TransientKind, message: String, retry_after: Option<Duration>) -> ModelError {
    ModelError::Transient { kind, message, retry_after }
}

fn permanent(kind: PermanentKind, message: String) -> ModelError {
    ModelError::Permanent { kind, message }
}

/// A non-2xx answer. The provider's own error type and message are kept in the text, and
/// `retry-after` is honoured so the harness backs off as long as the provider asked.
#[cfg(feature = "client")]
pub(crate) fn from_status(provider: &str, status: StatusCode, headers: &HeaderMap, body: &str) -> ModelError {
    from_status_at(provider, status, headers, body, SystemTime::now())
}

/// [`from_status`] at `now` (an HTTP-date `retry-after` is relative to it): the Workers
/// have no system clock of their own and pass theirs.
pub(crate) fn from_status_at(provider: &str, status: StatusCode, headers: &HeaderMap, body: &str, now: SystemTime) -> ModelError {
    let detail = ProviderError::parse(body);
    let message = match &detail.error_type {
        Some(t) => format!("{provider}: HTTP {} {t}: {}", status.as_u16(), detail.message),
        None => format!("{provider}: HTTP {}: {}", status.as_u16(), detail.message),
    };
    let retry_after = retry_after(headers, now);
    // Anthropic may name overload in the body under a status other than 529.
    if detail.error_type.as_deref() == Some("overloaded_error") {
        return transient(TransientKind::Overloaded, message, retry_after);
    }
    match status.as_u16() {
        429 => transient(TransientKind::RateLimited, message, retry_after),
        529 => transient(TransientKind::Overloaded, message, retry_after),
        408 => transient(TransientKind::Network, message, retry_after),
        500..=599 => transient(TransientKind::ServerError, message, retry_after),
        401 | 403 => permanent(PermanentKind::Authentication, message),
        404 => permanent(PermanentKind::ModelNotFound, message),
        400 | 413 | 422 => permanent(PermanentKind::InvalidRequest, message),
        _ => permanent(PermanentKind::Other, message),
    }
}

/// An error the provider reported inside a 200 stream (Anthropic's `event: error`, or an
/// OpenAI-compatible `{"error": …}` chunk). Only the error type says whether to retry.
pub(crate) fn from_stream_error(provider: &str, error_type: &str, message: &str) -> ModelError {
    let text = format!("{provider}: {error_type}: {message}");
    match error_type {
        "overloaded_error" => transient(TransientKind::Overloaded, text, None),
        "rate_limit_error" | "rate_limit_exceeded" | "tokens" | "requests" => {
            transient(TransientKind::RateLimited, text, None)
        }
        "api_error" | "server_error" | "internal_error" => transient(TransientKind::ServerError, text, None),
        "authentication_error" | "permission_error" => permanent(PermanentKind::Authentication, text),
        "not_found_error" => permanent(PermanentKind::ModelNotFound, text),
        "invalid_request_error" | "request_too_large" => permanent(PermanentKind::InvalidRequest, text),
        _ => permanent(PermanentKind::Other, text),
    }
}

/// A failure of the HTTP exchange itself, before a status was known.
#[cfg(feature = "client")]
pub(crate) fn from_transport(provider: &str, err: &reqwest::Error) -> ModelError {
    let message = format!("{provider}: {}", error_chain(err));
    // Retrying cannot help a build that has no TLS: say what to change.
    if !cfg!(feature = "tls") && err.url().is_some_and(|url| url.scheme() == "https") {
        return permanent(
            PermanentKind::NotConfigured,
            format!("{message} (HTTPS needs openma-models to be built with its `tls` feature)"),
        );
    }
    if err.is_builder() {
        return permanent(PermanentKind::Other, message);
    }
    transient(TransientKind::Network, message, None)
}

/// The body broke off after the status was known: the provider (or a proxy) dropped the
/// connection mid-message.
pub(crate) fn stream_cut(provider: &str, detail: &str) -> ModelError {
    transient(
        TransientKind::StreamCut,
        format!("{provider}: the stream ended before the message was complete ({detail})"),
        None,
    )
}

/// Nothing arrived for `idle`: treated like a dead connection.
pub(crate) fn idle_timeout(provider: &str, idle: Duration, waiting_for: &str) -> ModelError {
    transient(TransientKind::Network, format!("{provider}: no {waiting_for} for {} ms", idle.as_millis()), None)
}

/// The provider sent something that is not its own wire format. Retrying may help (a
/// garbled proxy response), so this is a cut stream rather than a permanent failure.
pub(crate) fn malformed(provider: &str, detail: impl std::fmt::Display) -> ModelError {
    transient(TransientKind::StreamCut, format!("{provider}: malformed stream: {detail}"), None)
}

/// Replace every occurrence of the API key in an error's message, so a provider that
/// echoes the key (or a URL that carries it) cannot leak it into logs or events.
pub(crate) fn redact(err: ModelError, secret: &str) -> ModelError {
    if secret.len() < 4 {
        return err;
    }
    match err {
        ModelError::Transient { kind, message, retry_after } if message.contains(secret) => {
            ModelError::Transient { kind, message: message.replace(secret, "[redacted]"), retry_after }
        }
        ModelError::Permanent { kind, message } if message.contains(secret) => {
            ModelError::Permanent { kind, message: message.replace(secret, "[redacted]") }
        }
        other => other,
    }
}

/// `retry-after-ms` (OpenAI, fractional milliseconds) wins over `retry-after` (seconds or
/// an HTTP date).
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = header("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The error type and message of an Anthropic body (`{"type":"error","error":{…}}`) or an
/// OpenAI body (`{"error":{"message","type","code"}}`); otherwise the body text itself.
struct ProviderError {
    error_type: Option<String>,
    message: String,
}

impl ProviderError {
    fn parse(body: &str) -> Self {
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        let error = parsed.as_ref().and_then(|v| v.get("error"));
        if let Some(error) = error {
            let text = |k: &str| error.get(k).and_then(Value::as_str).map(str::to_owned);
            let error_type = text("type").or_else(|| text("code"));
            let message = text("message").unwrap_or_else(|| error.to_string());
            return Self { error_type, message };
        }
        let trimmed = body.trim();
        let message = if trimmed.is_empty() { "no error body".to_owned() } else { trimmed.to_owned() };
        Self { error_type: None, message }
    }
}

#[cfg(feature = "client")]
/// reqwest's top-level `Display` hides the cause ("error sending request"); the chain
/// says what actually happened ("connection refused").
fn error_chain(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    fn kind(err: &ModelError) -> String {
        match err {
            ModelError::Transient { kind, .. } => format!("transient {kind:?}"),
            ModelError::Permanent { kind, .. } => format!("permanent {kind:?}"),
        }
    }

    #[test]
    fn statuses_map_to_kinds() {
        let none = HeaderMap::new();
        let cases = [
            (429, "transient RateLimited"),
            (529, "transient Overloaded"),
            (500, "transient ServerError"),
            (502, "transient ServerError"),
            (503, "transient ServerError"),
            (504, "transient ServerError"),
            (401, "permanent Authentication"),
            (403, "permanent Authentication"),
            (404, "permanent ModelNotFound"),
            (400, "permanent InvalidRequest"),
            (413, "permanent InvalidRequest"),
            (422, "permanent InvalidRequest"),
            (418, "permanent Other"),
        ];
        for (status, expected) in cases {
            let err = from_status("p", StatusCode::from_u16(status).unwrap(), &none, "");
            assert_eq!(kind(&err), expected, "status {status}");
        }
    }

    #[test]
    fn provider_message_is_kept() {
        let anthropic = r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too big"}}"#;
        let err = from_status("anthropic", StatusCode::BAD_REQUEST, &HeaderMap::new(), anthropic);
        assert_eq!(err.to_string(), "anthropic: HTTP 400 invalid_request_error: max_tokens: too big");
        let openai =
            r#"{"error":{"message":"Incorrect API key","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        let err = from_status("openai", StatusCode::UNAUTHORIZED, &HeaderMap::new(), openai);
        assert_eq!(kind(&err), "permanent Authentication");
        assert!(err.to_string().contains("Incorrect API key"));
        let err = from_status("x", StatusCode::BAD_GATEWAY, &HeaderMap::new(), "<html>bad gateway</html>");
        assert!(err.to_string().contains("bad gateway"));
    }

    #[test]
    fn overloaded_body_wins_over_status() {
        let body = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let err = from_status("anthropic", StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new(), body);
        assert_eq!(kind(&err), "transient Overloaded");
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(&headers(&[("retry-after", "7")]), now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&headers(&[("retry-after", "1.5")]), now), Some(Duration::from_millis(1500)));
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7"), ("retry-after-ms", "250")]), now),
            Some(Duration::from_millis(250))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(retry_after(&headers(&[("retry-after", &date)]), now), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(retry_after(&headers(&[("retry-after", &past)]), now), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn stream_error_types() {
        assert_eq!(kind(&from_stream_error("a", "overloaded_error", "m")), "transient Overloaded");
        assert_eq!(kind(&from_stream_error("a", "rate_limit_error", "m")), "transient RateLimited");
        assert_eq!(kind(&from_stream_error("a", "api_error", "m")), "transient ServerError");
        assert_eq!(kind(&from_stream_error("a", "invalid_request_error", "m")), "permanent InvalidRequest");
        assert_eq!(kind(&from_stream_error("a", "weird_error", "m")), "permanent Other");
    }

    #[test]
    fn redaction_removes_the_key() {
        let err = permanent(PermanentKind::Authentication, "bad key sk-secret-123 given".into());
        assert_eq!(redact(err, "sk-secret-123").to_string(), "bad key [redacted] given");
    }
}
