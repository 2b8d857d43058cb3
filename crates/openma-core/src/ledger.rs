//! The billing ledger: what each model request and each running interval cost, priced
//! at the moment it happened (a later price change never rewrites history).

use openma_types::Timestamp;
use serde::{Deserialize, Serialize};

use crate::model::Usage;
use crate::harness::tools::SandboxUsage;
use crate::pricing::{self, ModelPrice, RUNTIME_MICROS_PER_HOUR, SANDBOX_CPU_MICROS_PER_HOUR};

/// One ledger row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub id: String,
    pub session_id: String,
    pub agent_id: String,
    pub model: String,
    /// `input_tokens`, `output_tokens`, `cache_read_tokens`, `cache_write_tokens`, `runtime_ms`,
    /// `sandbox_wall_ms`, `sandbox_cpu_ms`.
    pub kind: String,
    pub quantity: i64,
    /// Micro-dollars per million units (tokens) or per hour (runtime).
    pub unit_price: i64,
    /// Micro-dollars.
    pub amount: i64,
    pub currency: String,
    /// The event that caused it; with `kind`, what makes the row idempotent.
    pub source: String,
    pub created_at: Timestamp,
}

/// Who and what a row is about.
pub struct Subject<'a> {
    pub session_id: &'a str,
    pub agent_id: &'a str,
    pub model: &'a str,
}

/// What one row measures: `(kind, quantity, unit price, amount)`.
type Measure<'a> = (&'a str, u64, u64, u64);

fn row(s: &Subject<'_>, id: String, (kind, quantity, unit_price, amount): Measure<'_>, source: &str, at: Timestamp) -> LedgerEntry {
    LedgerEntry {
        id,
        session_id: s.session_id.to_owned(),
        agent_id: s.agent_id.to_owned(),
        model: s.model.to_owned(),
        kind: kind.to_owned(),
        quantity: quantity as i64,
        unit_price: unit_price as i64,
        amount: amount as i64,
        currency: "USD".into(),
        source: source.to_owned(),
        created_at: at,
    }
}

/// The rows of one model request (zero quantities are left out). Models without a list
/// price are recorded with price 0, so token counts are never lost.
pub fn model_request(s: &Subject<'_>, usage: &Usage, source: &str, at: Timestamp, mut new_id: impl FnMut() -> String) -> Vec<LedgerEntry> {
    let price = pricing::model_price(s.model).unwrap_or(ModelPrice { input_per_mtok: 0, output_per_mtok: 0 });
    let kinds = [
        ("input_tokens", usage.input_tokens, price.input_per_mtok),
        ("output_tokens", usage.output_tokens, price.output_per_mtok),
        ("cache_read_tokens", usage.cache_read_input_tokens, price.input_per_mtok / 10),
        ("cache_write_tokens", usage.cache_creation_input_tokens, price.input_per_mtok * 5 / 4),
    ];
    kinds
        .into_iter()
        .filter(|(_, q, _)| *q > 0)
        .map(|(kind, q, unit)| {
            let amount = ((u128::from(q) * u128::from(unit)) / 1_000_000) as u64;
            row(s, new_id(), (kind, q, unit, amount), source, at)
        })
        .collect()
}

/// The row of one running interval, metered to the millisecond.
pub fn runtime(s: &Subject<'_>, millis: u64, source: &str, at: Timestamp, id: String) -> Option<LedgerEntry> {
    (millis > 0).then(|| {
        let amount = millis * RUNTIME_MICROS_PER_HOUR / 3_600_000;
        row(s, id, ("runtime_ms", millis, RUNTIME_MICROS_PER_HOUR, amount), source, at)
    })
}

/// The rows of one sandbox tool run (sourced by its tool use).
pub fn sandbox(s: &Subject<'_>, usage: &SandboxUsage, source: &str, at: Timestamp, mut new_id: impl FnMut() -> String) -> Vec<LedgerEntry> {
    let mut rows = vec![row(s, new_id(), ("sandbox_wall_ms", usage.wall_ms, 0, 0), source, at)];
    if usage.cpu_ms > 0 {
        let amount = usage.cpu_ms * SANDBOX_CPU_MICROS_PER_HOUR / 3_600_000;
        rows.push(row(s, new_id(), ("sandbox_cpu_ms", usage.cpu_ms, SANDBOX_CPU_MICROS_PER_HOUR, amount), source, at));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_priced_per_kind_at_list_price() {
        let s = Subject { session_id: "s", agent_id: "a", model: "claude-sonnet-4-6" };
        let u = Usage { input_tokens: 1_000_000, output_tokens: 2_000, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 };
        let mut n = 0;
        let rows = model_request(&s, &u, "sevt_1", Timestamp::from_micros(0), || {
            n += 1;
            format!("led_{n}")
        });
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].kind.as_str(), rows[0].amount), ("input_tokens", 3_000_000));
        assert_eq!((rows[1].kind.as_str(), rows[1].amount), ("output_tokens", 30_000));
        let r = runtime(&s, 3_600_000, "sevt_2", Timestamp::from_micros(0), "led_x".into()).unwrap();
        assert_eq!(r.amount, 80_000);
        let rows = sandbox(&s, &SandboxUsage { wall_ms: 5_000, cpu_ms: 7_200_000 }, "sevt_3", Timestamp::from_micros(0), || "led_y".into());
        assert_eq!((rows[0].kind.as_str(), rows[0].quantity, rows[0].amount), ("sandbox_wall_ms", 5_000, 0));
        assert_eq!((rows[1].kind.as_str(), rows[1].quantity, rows[1].amount), ("sandbox_cpu_ms", 7_200_000, 100_000));
        assert_eq!(sandbox(&s, &SandboxUsage { wall_ms: 3, cpu_ms: 0 }, "e", Timestamp::from_micros(0), || "l".into()).len(), 1);
    }
}
