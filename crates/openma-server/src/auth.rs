//! API-key authentication. The extractor yields the caller's tenant, which every domain
//! call requires: a handler cannot reach data without it.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use openma_core::TenantId;
use openma_core::keys;

use crate::app::AppState;
use crate::error::ApiError;

/// The authenticated tenant of a request.
pub struct Caller(pub TenantId);

/// The authenticated tenant and the id of the API key it presented, for operations that
/// record who made a change (memory versions).
pub struct KeyedCaller {
    pub tenant: TenantId,
    pub api_key_id: String,
}

/// Reads the key from `x-api-key: <key>` (what the seed's curl examples send) or
/// `Authorization: Bearer <key>` (what the SDKs send).
fn presented_key(parts: &Parts) -> Option<&str> {
    let header = |name| parts.headers.get(name).and_then(|v: &axum::http::HeaderValue| v.to_str().ok());
    keys::presented_key(header("x-api-key"), header("authorization"))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    /// An API key, or else a signed-in console session (the console's pages call the same
    /// API); a console request that changes anything must carry the session's CSRF token in
    /// `x-csrf-token`.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if presented_key(parts).is_none()
            && let Some(member) = crate::console::session_of(state, &parts.headers).await?
        {
            let safe = matches!(parts.method, axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS);
            let sent = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
            if !safe && !crate::console::csrf_ok(&member, sent) {
                return Err(ApiError::new(axum::http::StatusCode::FORBIDDEN, "a console request that changes something needs the page's `x-csrf-token`"));
            }
            return Ok(Caller(member.tenant));
        }
        KeyedCaller::from_request_parts(parts, state).await.map(|c| Caller(c.tenant))
    }
}

impl FromRequestParts<AppState> for KeyedCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = presented_key(parts).filter(|k| !k.is_empty()).ok_or_else(|| {
            ApiError::unauthorized(keys::MISSING_KEY)
        })?;
        match state.platform.authenticate(key).await? {
            Some((tenant, key_id)) => {
                if let Some(limiter) = &state.rate_limiter {
                    limiter.check(&key_id)?;
                }
                Ok(KeyedCaller { tenant, api_key_id: key_id })
            }
            None => Err(ApiError::unauthorized(keys::INVALID_KEY)),
        }
    }
}

/// Requests per minute allowed to each API key (a token bucket that refills evenly).
pub struct RateLimiter {
    limiter: governor::DefaultKeyedRateLimiter<String>,
    clock: governor::clock::DefaultClock,
}

impl RateLimiter {
    pub fn per_minute(n: std::num::NonZeroU32) -> Self {
        RateLimiter { limiter: governor::RateLimiter::keyed(governor::Quota::per_minute(n)), clock: Default::default() }
    }

    /// `429 rate_limit_error` with `retry-after` once the key's bucket is empty.
    pub fn check(&self, key_id: &str) -> Result<(), ApiError> {
        use governor::clock::Clock;
        match self.limiter.check_key(&key_id.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(ApiError::rate_limited(wait))
            }
        }
    }
}
