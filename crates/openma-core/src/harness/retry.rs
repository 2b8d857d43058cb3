//! Back-off for transient model failures: exponential with a cap, and never shorter than
//! what the provider asked for with `retry-after`.

use std::time::Duration;

/// How many times, and how patiently, a transient failure is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first one.
    pub max_retries: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_retries: 5, base: Duration::from_secs(1), cap: Duration::from_secs(60) }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (1-based), or `None` when the budget is spent.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if attempt > self.max_retries {
            return None;
        }
        let exp = self.base.saturating_mul(1u32 << (attempt - 1).min(20)).min(self.cap);
        Some(match retry_after {
            Some(r) => exp.max(r.min(self.cap.max(r))),
            None => exp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_honours_retry_after_and_ends() {
        let p = RetryPolicy { max_retries: 3, base: Duration::from_millis(100), cap: Duration::from_millis(250) };
        assert_eq!(p.delay(1, None), Some(Duration::from_millis(100)));
        assert_eq!(p.delay(2, None), Some(Duration::from_millis(200)));
        assert_eq!(p.delay(3, None), Some(Duration::from_millis(250)));
        assert_eq!(p.delay(4, None), None);
        assert_eq!(p.delay(1, Some(Duration::from_secs(2))), Some(Duration::from_secs(2)));
    }
}
