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

/// A duration as operators write it: `90s`, `15m`, `12h`, `30d` (or `ms`), more than zero.
/// The native configuration and the Workers' variables read it alike.
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: u64 = n.parse().ok().filter(|n| *n > 0).ok_or_else(|| format!("`{v}` is not a duration such as 90s, 15m, 12h or 30d"))?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("`{v}`: the unit must be ms, s, m, h or d")),
    };
    Ok(Duration::from_millis(n.saturating_mul(ms)))
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
