//! The billing ledger: what each model request and each running interval cost, priced
//! at the moment it happened (a later price change never rewrites history).

use openma_types::Timestamp;
use serde::{Deserialize, Serialize};

use crate::model::Usage;
use crate::error::{DomainError, DomainResult};
use crate::ports::{LedgerStore, UsageQuery, UsageRow};
use crate::tenancy::TenantId;
use openma_types::usage::{ExportAck, ExportEntry, ExportPage, ExportParams, UsageGroup, UsageLine, UsageParams, UsageReport};
use crate::harness::tools::SandboxUsage;
use crate::pricing::{HOURS_PER_MONTH, PriceSchedule, Rate};
use openma_types::model_cards::ModelPriceOverride;

/// One ledger row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub id: String,
    pub session_id: String,
    pub agent_id: String,
    pub model: String,
    /// `input_tokens`, `output_tokens`, `cache_read_tokens`, `cache_write_tokens`, `runtime_ms`,
    /// `sandbox_wall_ms`, `sandbox_cpu_ms`, `web_searches`, `file_storage` (byte-hours).
    pub kind: String,
    pub quantity: i64,
    /// Micro-dollars per million tokens, per hour (runtime, sandbox CPU), per search, or per
    /// GB-month of 730 hours (file storage).
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

impl<'a> Subject<'a> {
    /// The session, its agent and the agent's model.
    pub fn of(session: &'a openma_types::sessions::Session) -> Self {
        Subject { session_id: &session.id, agent_id: &session.agent.id, model: &session.agent.model.id }
    }
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

/// The rows of one model request (zero quantities are left out), at the prices in effect
/// at `at` (`card`: the overrides of the model card that served it). Models without any
/// price are recorded with price 0, so token counts are never lost.
pub fn model_request(
    s: &Subject<'_>,
    prices: &PriceSchedule,
    card: &[ModelPriceOverride],
    usage: &Usage,
    source: &str,
    at: Timestamp,
    mut new_id: impl FnMut() -> String,
) -> Vec<LedgerEntry> {
    let price = prices.model_price_or_free(s.model, at, card);
    let kinds = [
        ("input_tokens", usage.input_tokens, price.input_per_mtok),
        ("output_tokens", usage.output_tokens, price.output_per_mtok),
        ("cache_read_tokens", usage.cache_read_input_tokens, price.cache_read_per_mtok),
        ("cache_write_tokens", usage.cache_creation_input_tokens, price.cache_write_per_mtok),
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
pub fn runtime(s: &Subject<'_>, prices: &PriceSchedule, millis: u64, source: &str, at: Timestamp, id: String) -> Option<LedgerEntry> {
    (millis > 0).then(|| {
        let rate = prices.rate(Rate::RuntimePerHour, at);
        row(s, id, ("runtime_ms", millis, rate, per_hour(millis, rate)), source, at)
    })
}

fn per_hour(millis: u64, rate: u64) -> u64 {
    ((u128::from(millis) * u128::from(rate)) / 3_600_000) as u64
}

/// The rows of one sandbox tool run (sourced by its tool use).
pub fn sandbox(s: &Subject<'_>, prices: &PriceSchedule, usage: &SandboxUsage, source: &str, at: Timestamp, mut new_id: impl FnMut() -> String) -> Vec<LedgerEntry> {
    let mut rows = vec![row(s, new_id(), ("sandbox_wall_ms", usage.wall_ms, 0, 0), source, at)];
    if usage.cpu_ms > 0 {
        let rate = prices.rate(Rate::SandboxCpuPerHour, at);
        rows.push(row(s, new_id(), ("sandbox_cpu_ms", usage.cpu_ms, rate, per_hour(usage.cpu_ms, rate)), source, at));
    }
    rows
}

/// The row of one `web_search` the platform performed (sourced by its tool use).
pub fn web_search(s: &Subject<'_>, prices: &PriceSchedule, source: &str, at: Timestamp, id: String) -> LedgerEntry {
    let rate = prices.rate(Rate::WebSearchPerSearch, at);
    row(s, id, ("web_searches", 1, rate, rate), source, at)
}

/// The source of a file's storage row for the hour starting at `period_start`: one row per
/// file and hour, so metering the same hour again adds nothing.
pub fn file_storage_source(file_id: &str, period_start: Timestamp) -> String {
    let hour = period_start.to_string();
    format!("{file_id}:{}", &hour[..13.min(hour.len())])
}

/// A file's bytes held for part of one hour.
pub struct FileHeld<'a> {
    pub file_id: &'a str,
    /// The session the file belongs to, if any (else empty).
    pub session_id: &'a str,
    pub bytes: u64,
    /// How long within the hour.
    pub millis: u64,
}

/// The row of a file's storage in the hour starting at `period_start`, in byte-hours,
/// priced at the storage rate in effect at `at` (the hour's end).
pub fn file_storage(prices: &PriceSchedule, held: &FileHeld<'_>, period_start: Timestamp, at: Timestamp, id: String) -> Option<LedgerEntry> {
    let byte_hours = ((u128::from(held.bytes) * u128::from(held.millis)) / 3_600_000) as u64;
    (byte_hours > 0).then(|| {
        let rate = prices.rate(Rate::FileStoragePerGbMonth, at);
        let amount = ((u128::from(byte_hours) * u128::from(rate)) / (1_000_000_000 * u128::from(HOURS_PER_MONTH))) as u64;
        let s = Subject { session_id: held.session_id, agent_id: "", model: "" };
        row(&s, id, ("file_storage", byte_hours, rate, amount), &file_storage_source(held.file_id, period_start), at)
    })
}


// ---- the usage report -------------------------------------------------------------------

/// The store query of a report request: each dimension once, in the order first asked.
pub fn usage_query(p: &UsageParams) -> UsageQuery {
    let mut group_by = Vec::new();
    for g in &p.group_by {
        if !group_by.contains(g) {
            group_by.push(*g);
        }
    }
    UsageQuery { group_by, from: p.starting_at.map(Timestamp::as_micros), to: p.ending_at.map(Timestamp::as_micros) }
}

fn day(index: i64) -> String {
    Timestamp::from_micros(index * 86_400_000_000).to_string()[..10].to_owned()
}

fn line(r: UsageRow) -> UsageLine {
    UsageLine {
        agent_id: r.agent_id,
        session_id: r.session_id,
        model: r.model,
        kind: r.kind,
        day: r.day.map(day),
        quantity: r.quantity,
        amount_micros: r.amount_micros,
        currency: "USD".into(),
    }
}

/// The JSON report of the store's rows.
pub fn usage_report(rows: Vec<UsageRow>) -> UsageReport {
    let data: Vec<UsageLine> = rows.into_iter().map(line).collect();
    let total = data.iter().map(|l| l.amount_micros).sum();
    UsageReport { data, total_amount_micros: total, currency: "USD".into() }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

/// The CSV report: the dimensions asked for, `quantity`, `amount_usd` (dollars, six decimals).
pub fn usage_csv(group_by: &[UsageGroup], rows: Vec<UsageRow>) -> String {
    let mut out = group_by.iter().map(|g| g.field()).chain(["quantity", "amount_usd"]).collect::<Vec<_>>().join(",");
    out.push('\n');
    for l in rows.into_iter().map(line) {
        let mut cells: Vec<String> = group_by
            .iter()
            .map(|g| match g {
                UsageGroup::Agent => &l.agent_id,
                UsageGroup::Session => &l.session_id,
                UsageGroup::Model => &l.model,
                UsageGroup::Kind => &l.kind,
                UsageGroup::Day => &l.day,
            })
            .map(|v| csv_field(v.as_deref().unwrap_or_default()))
            .collect();
        cells.push(l.quantity.to_string());
        cells.push(format!("{}.{:06}", l.amount_micros / 1_000_000, l.amount_micros % 1_000_000));
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}


// ---- the usage export -------------------------------------------------------------------

/// Rows younger than this are not exported yet: on PostgreSQL a row with a lower
/// sequence number can commit after a higher one, and a cursor must never skip it.
pub const EXPORT_SETTLE_MICROS: i64 = 2_000_000;

fn encode_cursor(seq: i64) -> String {
    format!("ledger_{seq}")
}

fn decode_cursor(c: &str) -> DomainResult<i64> {
    c.strip_prefix("ledger_")
        .and_then(|n| n.parse().ok())
        .filter(|n: &i64| *n >= 0)
        .ok_or_else(|| DomainError::invalid(format!("`{c}` is not an export cursor")))
}

/// One page of the export: after `params.after`, else after the acknowledged cursor.
pub async fn export_page(store: &dyn LedgerStore, tenant: &TenantId, params: &ExportParams, now: Timestamp) -> DomainResult<ExportPage> {
    let limit = match params.limit {
        None => 500,
        Some(l) if (1..=1000).contains(&l) => l as u32,
        Some(l) => return Err(DomainError::invalid(format!("`limit` must be between 1 and 1000, got {l}"))),
    };
    let acked = store.export_acknowledged(tenant).await?;
    let after = match &params.after {
        Some(c) => decode_cursor(c)?,
        None => acked,
    };
    let mut rows = store.ledger_after(tenant, after, now.as_micros() - EXPORT_SETTLE_MICROS, limit + 1).await?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = rows.last().map(|(seq, _)| *seq).unwrap_or(after);
    let data = rows
        .into_iter()
        .map(|(seq, e)| ExportEntry {
            cursor: encode_cursor(seq),
            id: e.id,
            session_id: e.session_id,
            agent_id: e.agent_id,
            model: e.model,
            kind: e.kind,
            quantity: e.quantity,
            unit_price_micros: e.unit_price,
            amount_micros: e.amount,
            currency: e.currency,
            source: e.source,
            created_at: e.created_at,
        })
        .collect();
    Ok(ExportPage { data, next_cursor: encode_cursor(next), acknowledged_cursor: encode_cursor(acked), has_more })
}

/// Acknowledges the export up to a cursor; acknowledgements only move forward.
pub async fn acknowledge_export(store: &dyn LedgerStore, tenant: &TenantId, ack: &ExportAck) -> DomainResult<ExportAck> {
    let seq = decode_cursor(&ack.cursor)?;
    let kept = seq.max(store.export_acknowledged(tenant).await?);
    store.set_export_acknowledged(tenant, kept).await?;
    Ok(ExportAck { cursor: encode_cursor(kept) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_priced_per_kind_at_list_price() {
        let s = Subject { session_id: "s", agent_id: "a", model: "claude-sonnet-4-6" };
        let u = Usage { input_tokens: 1_000_000, output_tokens: 2_000, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 };
        let mut n = 0;
        let prices = PriceSchedule::default();
        let rows = model_request(&s, &prices, &[], &u, "sevt_1", Timestamp::from_micros(0), || {
            n += 1;
            format!("led_{n}")
        });
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].kind.as_str(), rows[0].amount), ("input_tokens", 3_000_000));
        assert_eq!((rows[1].kind.as_str(), rows[1].amount), ("output_tokens", 30_000));
        let r = runtime(&s, &prices, 3_600_000, "sevt_2", Timestamp::from_micros(0), "led_x".into()).unwrap();
        assert_eq!(r.amount, 80_000);
        let rows = sandbox(&s, &prices, &SandboxUsage { wall_ms: 5_000, cpu_ms: 7_200_000 }, "sevt_3", Timestamp::from_micros(0), || "led_y".into());
        assert_eq!((rows[0].kind.as_str(), rows[0].quantity, rows[0].amount), ("sandbox_wall_ms", 5_000, 0));
        assert_eq!((rows[1].kind.as_str(), rows[1].quantity, rows[1].amount), ("sandbox_cpu_ms", 7_200_000, 100_000));
        assert_eq!(sandbox(&s, &prices, &SandboxUsage { wall_ms: 3, cpu_ms: 0 }, "e", Timestamp::from_micros(0), || "l".into()).len(), 1);
    }

    #[test]
    fn a_price_change_prices_later_rows_only() {
        let s = Subject { session_id: "s", agent_id: "a", model: "claude-sonnet-4-6" };
        let u = Usage { input_tokens: 1_000_000, output_tokens: 0, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 };
        let mut prices = PriceSchedule::default();
        let before = model_request(&s, &prices, &[], &u, "sevt_1", Timestamp::from_micros(10), || "led_1".into());
        // the operator raises the price from t=20 on: the row written before keeps its amount,
        // a row of usage before t=20 written now is still priced at the old price
        prices.override_model("claude-sonnet-4-6", Timestamp::from_micros(20), crate::pricing::ModelPrice::list(6_000_000, 0));
        prices.override_rate(Rate::WebSearchPerSearch, Timestamp::from_micros(20), 20_000);
        let late = model_request(&s, &prices, &[], &u, "sevt_2", Timestamp::from_micros(19), || "led_2".into());
        let after = model_request(&s, &prices, &[], &u, "sevt_3", Timestamp::from_micros(20), || "led_3".into());
        assert_eq!((before[0].amount, late[0].amount, after[0].amount), (3_000_000, 3_000_000, 6_000_000));
        assert_eq!(web_search(&s, &prices, "sevt_4", Timestamp::from_micros(19), "l".into()).amount, 10_000);
        let w = web_search(&s, &prices, "sevt_4", Timestamp::from_micros(20), "l".into());
        assert_eq!((w.kind.as_str(), w.quantity, w.unit_price, w.amount), ("web_searches", 1, 20_000, 20_000));
    }

    #[test]
    fn file_storage_is_byte_hours_sourced_per_file_and_hour() {
        let prices = PriceSchedule::default();
        let hour: Timestamp = "2026-11-30T13:00:00Z".parse().unwrap();
        let end = Timestamp::from_micros(hour.as_micros() + 3_600_000_000);
        // 73 GB for a whole hour = 73e9 byte-hours = 0.1 GB-month at $0.023 = $0.0023
        let held = |bytes, millis| FileHeld { file_id: "file_1", session_id: "", bytes, millis };
        let r = file_storage(&prices, &held(73_000_000_000, 3_600_000), hour, end, "led_1".into()).unwrap();
        assert_eq!((r.kind.as_str(), r.quantity, r.amount), ("file_storage", 73_000_000_000, 2_300));
        assert_eq!(r.source, "file_1:2026-11-30T13");
        // half an hour counts half
        let half = file_storage(&prices, &held(1_000, 1_800_000), hour, end, "led_2".into()).unwrap();
        assert_eq!(half.quantity, 500);
        assert!(file_storage(&prices, &held(0, 3_600_000), hour, end, "l".into()).is_none());
    }
}
