//! The [`LedgerStore`] port on D1: the native `ledger_entries` table, where the SessionDOs
//! write what each model request and running interval cost and `/v1/usage` sums it. Rows
//! are idempotent on `(tenant, source, kind)`, so a step written twice is billed once.

use async_trait::async_trait;
use openma_core::ledger::LedgerEntry;
use openma_core::ports::{LedgerStore, UsageGroup, UsageQuery, UsageRow};
use openma_core::{StoreError, TenantId};
use openma_types::Timestamp;
use serde::Deserialize;
use serde_json::Value;
use worker::wasm_bindgen::JsValue;

use crate::d1::{D1, micros, num};
use crate::send;

/// Where the usage export's acknowledgement is kept, as natively (`platform_meta`).
fn ack_key(tenant: &TenantId) -> String {
    format!("usage_export_ack:{}", tenant.as_str())
}

#[derive(Deserialize)]
struct MetaValue {
    value: String,
}

/// A ledger row as D1 returns it (integers as JavaScript numbers).
#[derive(Deserialize)]
struct LedgerRow {
    seq: i64,
    id: String,
    session_id: String,
    agent_id: String,
    model: String,
    kind: String,
    quantity: i64,
    unit_price: i64,
    amount: i64,
    currency: String,
    source: String,
    created_at: i64,
}

impl LedgerRow {
    fn entry(self) -> (i64, LedgerEntry) {
        let e = LedgerEntry {
            id: self.id,
            session_id: self.session_id,
            agent_id: self.agent_id,
            model: self.model,
            kind: self.kind,
            quantity: self.quantity,
            unit_price: self.unit_price,
            amount: self.amount,
            currency: self.currency,
            source: self.source,
            created_at: Timestamp::from_micros(self.created_at),
        };
        (self.seq, e)
    }
}

/// Values per `INSERT` (twelve columns; D1 binds at most 100 per statement).
const ROWS_PER_INSERT: usize = 8;

#[async_trait]
impl LedgerStore for D1 {
    async fn insert_ledger(&self, tenant: &TenantId, rows: &[LedgerEntry]) -> Result<u64, StoreError> {
        let mut statements = Vec::new();
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut args: Vec<JsValue> = Vec::new();
            let mut values = Vec::new();
            for l in chunk {
                let first = args.len() + 1;
                values.push(format!("({})", (first..first + 12).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ")));
                args.extend([
                    JsValue::from_str(tenant.as_str()),
                    l.id.as_str().into(),
                    l.session_id.as_str().into(),
                    l.agent_id.as_str().into(),
                    l.model.as_str().into(),
                    l.kind.as_str().into(),
                    num(l.quantity),
                    num(l.unit_price),
                    num(l.amount),
                    l.currency.as_str().into(),
                    l.source.as_str().into(),
                    micros(l.created_at),
                ]);
            }
            statements.push(self.statement(
                &format!(
                    "INSERT INTO ledger_entries (tenant_id, id, session_id, agent_id, model, kind, quantity, unit_price, amount, currency, source, created_at) \
                     VALUES {} ON CONFLICT (tenant_id, source, kind) DO NOTHING",
                    values.join(", ")
                ),
                &args,
            )?);
        }
        if statements.is_empty() {
            return Ok(0);
        }
        Ok(send!(self.batch(statements))?.into_iter().sum())
    }

    async fn ledger_after(&self, tenant: &TenantId, after: i64, settled_before: i64, limit: u32) -> Result<Vec<(i64, LedgerEntry)>, StoreError> {
        let rows: Vec<LedgerRow> = send!(self.all(
            "SELECT seq, id, session_id, agent_id, model, kind, quantity, unit_price, amount, currency, source, created_at \
             FROM ledger_entries WHERE tenant_id = ?1 AND seq > ?2 AND created_at < ?3 ORDER BY seq LIMIT ?4",
            &[tenant.as_str().into(), num(after), num(settled_before), num(i64::from(limit))],
        ))?;
        Ok(rows.into_iter().map(LedgerRow::entry).collect())
    }

    async fn export_acknowledged(&self, tenant: &TenantId) -> Result<i64, StoreError> {
        let row: Option<MetaValue> = send!(self.first("SELECT value FROM platform_meta WHERE key = ?1", &[ack_key(tenant).into()]))?;
        Ok(row.and_then(|r| r.value.parse().ok()).unwrap_or(0))
    }

    async fn set_export_acknowledged(&self, tenant: &TenantId, seq: i64) -> Result<(), StoreError> {
        send!(self.run(
            "INSERT INTO platform_meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[ack_key(tenant).into(), seq.to_string().into()],
        ))?;
        Ok(())
    }

    async fn usage_report(&self, tenant: &TenantId, q: &UsageQuery) -> Result<Vec<UsageRow>, StoreError> {
        // each dimension under its own alias, so the row is read by name
        let mut select: Vec<String> = q.group_by.iter().map(|g| format!("{} AS {}", g.column(), g.field())).collect();
        select.push("SUM(quantity) AS quantity, SUM(amount) AS amount".into());
        let mut args = vec![JsValue::from_str(tenant.as_str())];
        let mut sql = format!("SELECT {} FROM ledger_entries WHERE tenant_id = ?1", select.join(", "));
        for (op, bound) in [(">=", q.from), ("<", q.to)] {
            if let Some(v) = bound {
                args.push(num(v));
                sql.push_str(&format!(" AND created_at {op} ?{}", args.len()));
            }
        }
        if !q.group_by.is_empty() {
            let cols = q.group_by.iter().map(|g| g.column()).collect::<Vec<_>>().join(", ");
            sql.push_str(&format!(" GROUP BY {cols} ORDER BY {cols}"));
        }
        let rows: Vec<serde_json::Map<String, Value>> = send!(self.all(&sql, &args))?;
        let int = |r: &serde_json::Map<String, Value>, k: &str| r.get(k).and_then(Value::as_f64).map(|v| v as i64);
        let text = |r: &serde_json::Map<String, Value>, k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok(rows
            .iter()
            .map(|r| UsageRow {
                agent_id: q.group_by.contains(&UsageGroup::Agent).then(|| text(r, "agent_id")).flatten(),
                session_id: q.group_by.contains(&UsageGroup::Session).then(|| text(r, "session_id")).flatten(),
                model: q.group_by.contains(&UsageGroup::Model).then(|| text(r, "model")).flatten(),
                kind: q.group_by.contains(&UsageGroup::Kind).then(|| text(r, "kind")).flatten(),
                day: q.group_by.contains(&UsageGroup::Day).then(|| int(r, "day")).flatten(),
                quantity: int(r, "quantity").unwrap_or(0),
                amount_micros: int(r, "amount").unwrap_or(0),
            })
            .collect())
    }
}
