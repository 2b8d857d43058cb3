//! The native implementations of the core's clock and id ports.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use openma_core::{Clock, IdGen};
use openma_types::Timestamp;
use rand::Rng;
use rand::distr::Alphanumeric;

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let micros = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0);
        Timestamp::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
    }
}

/// `prefix_` + a monotonic ULID, so ids sort by creation time.
pub struct UlidIds {
    generator: Mutex<ulid::Generator>,
}

impl Default for UlidIds {
    fn default() -> Self {
        UlidIds { generator: Mutex::new(ulid::Generator::new()) }
    }
}

impl IdGen for UlidIds {
    fn new_id(&self, prefix: &str) -> String {
        let id = {
            let mut g = self.generator.lock().expect("id generator lock");
            g.generate().unwrap_or_else(|_| ulid::Ulid::new())
        };
        format!("{prefix}_{id}")
    }

    fn nonce(&self) -> [u8; 12] {
        rand::rng().random()
    }

    fn api_key_secret(&self) -> String {
        let body: String = rand::rng().sample_iter(Alphanumeric).take(40).map(char::from).collect();
        format!("{}{body}", openma_core::tenancy::API_KEY_PREFIX)
    }
}

/// The current time as RFC 3339 (for manifests and messages).
pub fn now_string() -> String {
    SystemClock.now().to_string()
}
