//! `Idempotency-Key` on POSTs: the first result of a request is recorded and replayed for
//! a retry with the same key, so the SDK's automatic retries (after a 5xx or a timeout)
//! never create twice. A key reused for a different request is refused; a retry that
//! arrives while the first request runs is told to retry.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use openma_core::ports::IdempotencyClaim;
use openma_types::Timestamp;
use sha2::{Digest, Sha256};

use crate::app::{AppState, MAX_BODY_BYTES};
use crate::error::ApiError;

/// Recorded results are kept this long.
pub const RETENTION_MICROS: i64 = 24 * 3600 * 1_000_000;
/// Larger responses are not recorded (the key is released instead).
const MAX_RECORDED_BYTES: usize = 8 * 1024 * 1024;

fn presented_key(req: &Request) -> Option<String> {
    if let Some(v) = req.headers().get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_owned());
    }
    let auth = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

pub async fn layer(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST || !req.uri().path().starts_with("/v1/") {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get("idempotency-key").map(|v| v.to_str().map(str::to_owned)) else {
        return next.run(req).await;
    };
    let key = match key {
        Ok(k) if !k.is_empty() && k.len() <= 255 => k,
        _ => return ApiError::bad_request("`Idempotency-Key` must be 1-255 visible ASCII characters").into_response(),
    };
    // the tenant scopes the key; an unauthenticated request is left to the handler (401)
    let tenant = match presented_key(&req) {
        Some(secret) => match app.platform.authenticate(&secret).await {
            Ok(Some((tenant, _))) => tenant,
            _ => return next.run(req).await,
        },
        None => return next.run(req).await,
    };
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "the request body is too large").into_response(),
    };
    let hash = {
        let mut h = Sha256::new();
        h.update(parts.method.as_str());
        h.update(b"\0");
        h.update(parts.uri.to_string());
        h.update(b"\0");
        h.update(&bytes);
        h.finalize().iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let now = app.platform.clock.now();
    let store = app.platform.store.clone();
    let claim = store.claim_idempotency(&tenant, &key, &hash, now, Timestamp::from_micros(now.as_micros() - RETENTION_MICROS)).await;
    match claim {
        Err(e) => ApiError::from(openma_core::DomainError::from(e)).into_response(),
        Ok(IdempotencyClaim::Replay { status, body }) => {
            let mut r = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), [(header::CONTENT_TYPE, "application/json")], body).into_response();
            r.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            r
        }
        Ok(IdempotencyClaim::InProgress) => {
            let mut r = ApiError::new(StatusCode::CONFLICT, "a request with this Idempotency-Key is still being processed; retry shortly").into_response();
            r.headers_mut().insert("x-should-retry", HeaderValue::from_static("true"));
            r
        }
        Ok(IdempotencyClaim::Mismatch) => ApiError {
            code: Some("idempotency_key_reused"),
            ..ApiError::bad_request("this Idempotency-Key was already used for a different request")
        }
        .into_response(),
        Ok(IdempotencyClaim::New) => {
            let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
            let (rparts, rbody) = response.into_parts();
            let body = match to_bytes(rbody, MAX_RECORDED_BYTES).await {
                Ok(b) => b,
                Err(_) => {
                    let _ = store.release_idempotency(&tenant, &key).await;
                    return ApiError::internal().into_response();
                }
            };
            let recorded = if rparts.status.is_server_error() {
                store.release_idempotency(&tenant, &key).await
            } else {
                store.complete_idempotency(&tenant, &key, rparts.status.as_u16(), &String::from_utf8_lossy(&body)).await
            };
            if let Err(e) = recorded {
                tracing::warn!(error = %e, "cannot record an idempotent result");
            }
            Response::from_parts(rparts, Body::from(body))
        }
    }
}
