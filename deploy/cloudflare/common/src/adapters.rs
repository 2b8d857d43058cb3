//! The core's clock and id ports inside workerd: `Date.now()` and Web Crypto.

use openma_core::{Clock, IdGen};
use openma_types::Timestamp;

use crate::errors::random;

/// `Date.now()` (milliseconds; workerd advances it only across I/O, which is enough for
/// creation and update times).
pub struct WorkerClock;

impl Clock for WorkerClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(worker::Date::now().as_millis() as i64 * 1000)
    }
}

/// `prefix_` + a ULID, the same shape as the native server's ids, so ids sort by
/// creation time in either deployment.
pub struct WorkerIds;

impl IdGen for WorkerIds {
    fn new_id(&self, prefix: &str) -> String {
        let ms = worker::Date::now().as_millis();
        format!("{prefix}_{}", ulid::Ulid::from_parts(ms, u128::from_le_bytes(random::<16>())))
    }

    fn nonce(&self) -> [u8; 12] {
        random()
    }

    fn api_key_secret(&self) -> String {
        const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut body = String::with_capacity(40);
        while body.len() < 40 {
            // Rejection sampling: 248 = 4 × 62, so every character is equally likely.
            for b in random::<64>() {
                if b < 248 && body.len() < 40 {
                    body.push(ALPHANUMERIC[usize::from(b) % 62] as char);
                }
            }
        }
        format!("{}{body}", openma_core::tenancy::API_KEY_PREFIX)
    }
}
