//! The webhook delivery worker: sends the queued deliveries (see openma-core's `webhooks`
//! module) when they are due, signed per Standard Webhooks.
//!
//! Each delivery is claimed before it is sent (its attempt counted, its due time moved past
//! the request's timeout), so a scan never takes a delivery in flight, and a delivery whose
//! process died mid-flight is sent again once that lease ends. Receivers dedupe such a
//! retry by `webhook-id`, the event id, which every attempt carries. A 2xx marks the
//! delivery delivered; anything else waits the next back-off, up to
//! [`MAX_ATTEMPTS`](openma_core::webhooks::MAX_ATTEMPTS) attempts, then marks it failed.
//!
//! Destinations are resolved and pinned like `web_fetch`'s: private and loopback addresses
//! are refused (a failed attempt) unless the test-only private-address switch is on.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use openma_core::Platform;
use openma_core::TenantId;
use openma_core::webhooks::{AttemptOutcome, MAX_ATTEMPTS, QueuedDelivery, open_signing_key};
use openma_types::Timestamp;
use openma_types::webhooks::{WebhookDeliveryStatus, WebhookEndpointState};
use reqwest::Url;

/// How long a receiver has to answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How often the queue is scanned for due deliveries.
const POLL: Duration = Duration::from_millis(250);
/// Deliveries in flight at once.
const CONCURRENCY: usize = 8;
/// Bytes of a failed response's reason kept in the log.
const MAX_ERROR: usize = 300;

/// The Standard Webhooks signature header value of one attempt.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

pub use openma_core::web::check_destination;

/// Scans the queue for ever, sending what is due.
pub fn spawn(platform: Platform, allow_private: bool, delays: Vec<Duration>) {
    let worker = Arc::new(Worker { platform, allow_private, delays, slots: Arc::new(tokio::sync::Semaphore::new(CONCURRENCY)) });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = worker.clone().scan().await {
                tracing::warn!(error = %e, "webhook delivery scan failed");
            }
        }
    });
}

struct Worker {
    platform: Platform,
    allow_private: bool,
    delays: Vec<Duration>,
    slots: Arc<tokio::sync::Semaphore>,
}

fn later(now: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_micros(now.as_micros().saturating_add(d.as_micros() as i64))
}

impl Worker {
    async fn scan(self: Arc<Self>) -> Result<(), openma_core::StoreError> {
        let free = self.slots.available_permits();
        if free == 0 {
            return Ok(());
        }
        let due = self.platform.store.due_webhook_deliveries(self.platform.clock.now(), free as u32).await?;
        for (tenant, d) in due {
            let Ok(permit) = self.slots.clone().acquire_owned().await else { return Ok(()) };
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.attempt(&tenant, &d).await {
                    tracing::warn!(tenant = tenant.as_str(), delivery = d.id, error = %e, "webhook delivery attempt failed to record");
                }
                drop(permit);
            });
        }
        Ok(())
    }

    /// Claims and sends one due delivery, and records what came of it.
    async fn attempt(&self, tenant: &TenantId, d: &QueuedDelivery) -> Result<(), openma_core::StoreError> {
        let store = &self.platform.store;
        let now = self.platform.clock.now();
        let finish = |status, last_status, last_error: Option<String>, next| AttemptOutcome { status, next_attempt_at: next, last_status, last_error, at: now };
        if d.attempts >= MAX_ATTEMPTS {
            // its last attempt was in flight when a process stopped
            let error = d.last_error.clone().or_else(|| Some("no answer to the last attempt".into()));
            return store.record_webhook_attempt(tenant, &d.id, &finish(WebhookDeliveryStatus::Failed, d.last_status, error, now)).await;
        }
        let Some(endpoint) = store.get_webhook_endpoint(tenant, &d.endpoint_id).await? else { return Ok(()) };
        if endpoint.endpoint.state == WebhookEndpointState::Disabled {
            let error = Some("the endpoint is disabled".into());
            return store.record_webhook_attempt(tenant, &d.id, &finish(WebhookDeliveryStatus::Failed, None, error, now)).await;
        }
        let lease = later(now, TIMEOUT + Duration::from_secs(20));
        if !store.claim_webhook_delivery(tenant, &d.id, d.attempts, now, lease).await? {
            return Ok(());
        }
        let attempt = d.attempts + 1;
        let result = match self.platform.secrets.as_deref() {
            Some(secrets) => match open_signing_key(secrets, tenant, &endpoint) {
                Ok(key) => self.send(&endpoint.endpoint.url, &key, d).await,
                Err(e) => Err((None, format!("cannot open the signing secret: {e}"))),
            },
            None => Err((None, "the server has no root secret".into())),
        };
        let now = self.platform.clock.now();
        let outcome = match result {
            Ok(code) => AttemptOutcome { status: WebhookDeliveryStatus::Delivered, next_attempt_at: now, last_status: Some(code), last_error: None, at: now },
            Err((code, error)) => {
                let retry = (attempt < MAX_ATTEMPTS).then(|| self.delays.get(attempt as usize - 1).or(self.delays.last()).copied().unwrap_or_default());
                tracing::info!(tenant = tenant.as_str(), delivery = d.id, attempt, error = %error, "webhook delivery attempt failed");
                AttemptOutcome {
                    status: if retry.is_some() { WebhookDeliveryStatus::Pending } else { WebhookDeliveryStatus::Failed },
                    next_attempt_at: later(now, retry.unwrap_or_default()),
                    last_status: code,
                    last_error: Some(error),
                    at: now,
                }
            }
        };
        store.record_webhook_attempt(tenant, &d.id, &outcome).await
    }

    /// POSTs the body; the status on 2xx, else the status (if any) and why.
    async fn send(&self, url: &str, key: &[u8], d: &QueuedDelivery) -> Result<i64, (Option<i64>, String)> {
        let url = Url::parse(url).map_err(|e| (None, format!("invalid URL: {e}")))?;
        let client = crate::tools::web::pinned_client(&url, self.allow_private, TIMEOUT).await.map_err(|e| (None, e))?;
        let timestamp = self.platform.clock.now().as_micros() / 1_000_000;
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &d.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature(key, &d.event_id, timestamp, &d.payload))
            .body(d.payload.clone())
            .send()
            .await
            .map_err(|e| (None, truncate(format!("request failed: {e}"))))?;
        let code = i64::from(response.status().as_u16());
        if response.status().is_success() {
            Ok(code)
        } else {
            Err((Some(code), format!("the endpoint answered {}", response.status())))
        }
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_ERROR {
        let mut end = MAX_ERROR;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_standard_webhooks_reference_vector() {
        // from the Standard Webhooks specification's test vectors
        let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn private_destinations_are_refused_unless_allowed() {
        for url in ["http://127.0.0.1:9/h", "http://localhost/h", "https://10.0.0.1/", "http://[::1]/", "http://169.254.169.254/"] {
            assert!(check_destination(url, false).is_err(), "{url}");
            assert!(check_destination(url, true).is_ok(), "{url}");
        }
        assert!(check_destination("https://example.com/hook", false).is_ok());
    }
}
