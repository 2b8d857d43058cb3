//! Retention: what the platform forgets once it is old enough. Memory versions go after
//! their age except the newest of each memory (what the API promises to keep); webhook
//! deliveries go once finished and old. Each pass deletes in bounded batches so no
//! statement holds the database for long.

use std::time::Duration;

use openma_types::Timestamp;

use crate::Platform;
use crate::error::DomainResult;

/// Rows deleted per statement.
const BATCH: u32 = 1000;

/// How long things are kept (the defaults are the hosted platform's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub memory_versions: Duration,
    pub webhook_deliveries: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        const DAYS_30: Duration = Duration::from_secs(30 * 86_400);
        RetentionPolicy { memory_versions: DAYS_30, webhook_deliveries: DAYS_30 }
    }
}

/// The instant `age` before `now`.
pub fn before(now: Timestamp, age: Duration) -> Timestamp {
    Timestamp::from_micros(now.as_micros().saturating_sub(i64::try_from(age.as_micros()).unwrap_or(i64::MAX)))
}

impl Platform {
    /// Deletes memory versions older than `age`, keeping each memory's newest. Returns how many went.
    pub async fn purge_memory_versions(&self, age: Duration) -> DomainResult<u64> {
        let cutoff = before(self.now(), age);
        let mut total = 0;
        loop {
            let n = self.store.purge_memory_versions(cutoff, BATCH).await?;
            total += n;
            if n < u64::from(BATCH) {
                return Ok(total);
            }
        }
    }

    /// Deletes delivered and failed webhook deliveries last changed more than `age` ago.
    pub async fn purge_webhook_deliveries(&self, age: Duration) -> DomainResult<u64> {
        let cutoff = before(self.now(), age);
        let mut total = 0;
        loop {
            let n = self.store.purge_webhook_deliveries(cutoff, BATCH).await?;
            total += n;
            if n < u64::from(BATCH) {
                return Ok(total);
            }
        }
    }
}
