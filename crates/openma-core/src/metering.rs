//! Periodic metering: usage that no event causes, measured by a job every node may run.
//! Today that is file storage: the bytes each stored file holds, per whole UTC hour, in
//! byte-hours (a file of 1 GB kept for a day is 24 × 10⁹ byte-hours).
//!
//! Each row is sourced by `file_id:hour` (`file_abc:2026-11-30T13`), so metering an hour
//! again (after a crash before the watermark moved, or on a second node) adds nothing. A
//! watermark in `platform_meta` remembers the end of the last metered hour, so a server
//! that was down catches up on the hours it missed (at most a month of them).
//!
//! Mount copies are not metered (they share their original's bytes), nor the bytes of a
//! file after it expired. A file deleted before its last hour is metered is not charged for
//! that partial hour: deletion removes the row the job would read.

use openma_types::Timestamp;

use crate::error::DomainResult;
use crate::ledger;
use crate::platform::Platform;

const WATERMARK: &str = "file_storage_metered_until";
const HOUR_MICROS: i64 = 3_600_000_000;
/// How far back a server that was down catches up.
const MAX_HOURS_BEHIND: i64 = 24 * 31;
/// Rows per insert.
const BATCH: usize = 500;

fn floor_hour(t: Timestamp) -> i64 {
    t.as_micros().div_euclid(HOUR_MICROS) * HOUR_MICROS
}

/// How long a file held its bytes within the hour `[hour, hour + 1h)`, in milliseconds.
fn held_millis(created: Timestamp, expires: Option<Timestamp>, hour: i64) -> u64 {
    let from = created.as_micros().max(hour);
    let until = expires.map_or(i64::MAX, |e| e.as_micros()).min(hour + HOUR_MICROS);
    (until.saturating_sub(from).max(0) / 1000) as u64
}

impl Platform {
    /// Meters file storage for every whole hour that ended by now and was not metered yet.
    /// Returns how many rows were written.
    pub async fn meter_file_storage(&self) -> DomainResult<u64> {
        self.meter_file_storage_until(self.now()).await
    }

    /// [`Self::meter_file_storage`] for the hours that end by `until`.
    pub async fn meter_file_storage_until(&self, until: Timestamp) -> DomainResult<u64> {
        let end = floor_hour(until);
        let done = self.store.get_meta(WATERMARK).await?.and_then(|v| v.parse::<i64>().ok());
        let start = done.unwrap_or(end - HOUR_MICROS).max(end - MAX_HOURS_BEHIND * HOUR_MICROS);
        if start >= end {
            return Ok(0);
        }
        let mut written = 0;
        for tenant in self.store.list_tenants().await? {
            let files = self.store.stored_files(&tenant.id, Timestamp::from_micros(end)).await?;
            let mut rows = Vec::new();
            let mut hour = start;
            while hour < end {
                let (from, to) = (Timestamp::from_micros(hour), Timestamp::from_micros(hour + HOUR_MICROS));
                for f in &files {
                    let millis = held_millis(f.meta.created_at, f.meta.expires_at, hour);
                    if millis == 0 {
                        continue;
                    }
                    let id = self.ids.new_id("led");
                    let held = ledger::FileHeld { file_id: &f.meta.id, session_id: f.scope_id().unwrap_or_default(), bytes: f.meta.size_bytes, millis };
                    rows.extend(ledger::file_storage(&self.prices, &held, from, to, id));
                }
                hour += HOUR_MICROS;
            }
            for batch in rows.chunks(BATCH) {
                written += self.store.insert_ledger(&tenant.id, batch).await?;
            }
        }
        self.store.put_meta(WATERMARK, &end.to_string(), false).await?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_charged_for_the_part_of_the_hour_it_held_bytes() {
        let hour = 10 * HOUR_MICROS;
        let t = |m: i64| Timestamp::from_micros(hour + m * 60_000_000);
        assert_eq!(held_millis(t(-5), None, hour), 3_600_000);
        assert_eq!(held_millis(t(30), None, hour), 1_800_000);
        assert_eq!(held_millis(t(-5), Some(t(15)), hour), 900_000);
        assert_eq!(held_millis(t(61), None, hour), 0, "created after the hour");
        assert_eq!(held_millis(t(-90), Some(t(-60)), hour), 0, "expired before it");
    }
}
