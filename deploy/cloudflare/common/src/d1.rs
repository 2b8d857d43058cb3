//! The D1 database handle the ports' adapters share: prepared statements, one-shot runs,
//! atomic batches, and the value conversions (microsecond timestamps as numbers, unique
//! violations as [`StoreError::Duplicate`]) that keep rows identical to the native SQLite
//! store's, so a database moves between the two unchanged.

use serde::Deserialize;
use worker::send::SendWrapper;
use worker::wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, D1Result};

use openma_core::StoreError;
use openma_types::Timestamp;

/// The control-plane database (binding `DB`): the adapters of [`openma_core::KeyStore`]
/// (`d1_keys`) and [`openma_core::AgentStore`] (`d1_agents`) are implemented on it.
pub struct D1 {
    db: SendWrapper<D1Database>,
}

/// D1 reports a unique-constraint failure only in its message.
pub fn store_error(e: worker::Error) -> StoreError {
    let text = e.to_string();
    if text.contains("UNIQUE constraint failed") { StoreError::Duplicate(text) } else { StoreError::Backend(text) }
}

/// Microseconds as a JavaScript number: exact below 2^53 µs (year 2255).
pub fn micros(t: Timestamp) -> JsValue {
    num(t.as_micros())
}

/// An integer as a JavaScript number (exact below 2^53).
pub fn num(v: i64) -> JsValue {
    JsValue::from_f64(v as f64)
}

pub fn opt_micros(t: Option<Timestamp>) -> JsValue {
    t.map_or(JsValue::NULL, micros)
}

impl D1 {
    pub fn new(db: D1Database) -> Self {
        D1 { db: SendWrapper::new(db) }
    }

    pub fn statement(&self, sql: &str, args: &[JsValue]) -> Result<D1PreparedStatement, StoreError> {
        self.db.prepare(sql).bind(args).map_err(store_error)
    }

    pub async fn run(&self, sql: &str, args: &[JsValue]) -> Result<u64, StoreError> {
        let r = self.statement(sql, args)?.run().await.map_err(store_error)?;
        Ok(r.meta().map_err(store_error)?.and_then(|m| m.changes).unwrap_or(0) as u64)
    }

    pub async fn first<T: for<'a> Deserialize<'a>>(&self, sql: &str, args: &[JsValue]) -> Result<Option<T>, StoreError> {
        self.statement(sql, args)?.first::<T>(None).await.map_err(store_error)
    }

    pub async fn all<T: for<'a> Deserialize<'a>>(&self, sql: &str, args: &[JsValue]) -> Result<Vec<T>, StoreError> {
        let r = self.statement(sql, args)?.all().await.map_err(store_error)?;
        if let Some(e) = r.error() {
            return Err(StoreError::Backend(e));
        }
        r.results::<T>().map_err(store_error)
    }

    /// Runs the statements in one transaction (all or none); returns each one's result.
    pub async fn batch_results(&self, statements: Vec<D1PreparedStatement>) -> Result<Vec<D1Result>, StoreError> {
        self.db.batch(statements).await.map_err(store_error)
    }

    /// Runs the statements in one transaction (all or none); returns each one's change count.
    pub async fn batch(&self, statements: Vec<D1PreparedStatement>) -> Result<Vec<u64>, StoreError> {
        let results = self.batch_results(statements).await?;
        results.iter().map(|r| Ok(r.meta().map_err(store_error)?.and_then(|m| m.changes).unwrap_or(0) as u64)).collect()
    }
}

/// D1's futures hold JavaScript values, which are not `Send`; workerd runs each isolate
/// on one thread, so asserting `Send` is sound there.
#[macro_export]
macro_rules! send {
    ($e:expr) => {
        worker::send::SendFuture::new($e).await
    };
}


/// A row's JSON body, as the native store writes it.
#[derive(Deserialize)]
pub struct Body {
    body: String,
}

impl Body {
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, StoreError> {
        serde_json::from_str(&self.body).map_err(|e| StoreError::Backend(format!("corrupt row: {e}")))
    }
}

pub fn encode<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("domain objects serialise to JSON")
}

pub fn decode_all<T: serde::de::DeserializeOwned>(rows: Vec<Body>) -> Result<Vec<T>, StoreError> {
    rows.iter().map(Body::decode).collect()
}

/// The filter, order and limit of one list page (the native store's `push_page`), for a
/// table with `created_at`, `id` and `archived` columns, binding after `args`.
pub fn page_clause(q: &openma_core::ports::ListQuery, args: &mut Vec<JsValue>) -> String {
    use openma_core::ports::Order;
    let bind = |args: &mut Vec<JsValue>, v: JsValue| {
        args.push(v);
        format!("?{}", args.len())
    };
    let mut sql = String::new();
    if !q.include_archived {
        sql.push_str(" AND NOT archived");
    }
    for (op, v) in [(">", q.created.gt), (">=", q.created.gte), ("<", q.created.lt), ("<=", q.created.lte)] {
        if let Some(v) = v {
            let p = bind(args, num(v));
            sql.push_str(&format!(" AND created_at {op} {p}"));
        }
    }
    let (cmp, dir) = match q.order {
        Order::Asc => (">", "ASC"),
        Order::Desc => ("<", "DESC"),
    };
    if let Some(p) = &q.after {
        let at = bind(args, num(p.created_at));
        let id = bind(args, JsValue::from_str(&p.id));
        sql.push_str(&format!(" AND (created_at {cmp} {at} OR (created_at = {at} AND id {cmp} {id}))"));
    }
    let limit = bind(args, JsValue::from_f64(f64::from(q.limit)));
    sql.push_str(&format!(" ORDER BY created_at {dir}, id {dir} LIMIT {limit}"));
    sql
}
