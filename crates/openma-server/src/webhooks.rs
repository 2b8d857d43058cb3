//! The webhook delivery worker: scans the queue (see openma-core's `webhooks` module) and
//! sends what is due, each attempt by the core's `Webhooks::attempt` (claim, sign per
//! Standard Webhooks, send, record, back off) — the same steps the Workers take.
//!
//! Destinations are resolved and pinned like `web_fetch`'s: private and loopback addresses
//! are refused (a failed attempt) unless the test-only private-address switch is on.

use std::sync::Arc;
use std::time::Duration;

use openma_core::Platform;
use openma_core::webhooks::{TIMEOUT, WebhookSender};
use reqwest::Url;

/// How often the queue is scanned for due deliveries.
const POLL: Duration = Duration::from_millis(250);
/// Deliveries in flight at once.
const CONCURRENCY: usize = 8;

pub use openma_core::web::check_destination;
pub use openma_core::webhooks::signature;

/// Scans the queue for ever, sending what is due.
pub fn spawn(platform: Platform, allow_private: bool, delays: Vec<Duration>) {
    let worker = Arc::new(Worker { platform, sender: PinnedSender { allow_private }, delays, slots: Arc::new(tokio::sync::Semaphore::new(CONCURRENCY)) });
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
    sender: PinnedSender,
    delays: Vec<Duration>,
    slots: Arc<tokio::sync::Semaphore>,
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
                if let Err(e) = me.platform.webhooks().attempt(&tenant, &d, &me.sender, &me.delays).await {
                    tracing::warn!(tenant = tenant.as_str(), delivery = d.id, error = %e, "webhook delivery attempt failed to record");
                }
                drop(permit);
            });
        }
        Ok(())
    }
}

/// Sends with a client pinned to the destination's checked address (as `web_fetch` does).
struct PinnedSender {
    allow_private: bool,
}

#[async_trait::async_trait]
impl WebhookSender for PinnedSender {
    async fn post(&self, url: &str, headers: &[(&'static str, String)], body: &str) -> Result<i64, (Option<i64>, String)> {
        let url = Url::parse(url).map_err(|e| (None, format!("invalid URL: {e}")))?;
        let client = crate::tools::web::pinned_client(&url, self.allow_private, TIMEOUT).await.map_err(|e| (None, e))?;
        let mut request = client.post(url).body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.map_err(|e| (None, format!("request failed: {e}")))?;
        let code = i64::from(response.status().as_u16());
        if response.status().is_success() { Ok(code) } else { Err((Some(code), format!("the endpoint answered {}", response.status()))) }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

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
