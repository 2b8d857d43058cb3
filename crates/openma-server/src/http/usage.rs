//! `GET /v1/usage`: the ledger summed by agent, session, model, kind and/or day, as JSON
//! or CSV.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use openma_core::ports::{UsageGroup, UsageQuery, UsageRow};
use openma_types::{ErrorEnvelope, Timestamp};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::ApiQuery;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/usage", get(usage))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// Dimensions to group by: `agent`, `session`, `model`, `kind`, `day` (repeat).
    #[serde(rename = "group_by[]", alias = "group_by", default)]
    #[param(value_type = Vec<String>)]
    pub group_by: Vec<UsageGroup>,
    /// Only entries at or after this time.
    #[serde(default)]
    pub starting_at: Option<Timestamp>,
    /// Only entries before this time.
    #[serde(default)]
    pub ending_at: Option<Timestamp>,
    /// `json` (default) or `csv`.
    #[serde(default)]
    #[param(value_type = Option<String>)]
    pub format: Option<Format>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Csv,
}

/// One line of the report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageLine {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `YYYY-MM-DD` (UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    /// Tokens, or milliseconds for `runtime_ms`; a sum over mixed kinds when not grouped by kind.
    pub quantity: i64,
    /// List cost in micro-dollars (exact).
    pub amount_micros: i64,
    pub currency: &'static str,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageReport {
    pub data: Vec<UsageLine>,
    pub total_amount_micros: i64,
    pub currency: &'static str,
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
        currency: "USD",
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

/// Usage and list cost from the ledger.
#[utoipa::path(get, path = "/v1/usage", tag = "usage", params(UsageParams),
    responses((status = 200, body = UsageReport), (status = 400, body = ErrorEnvelope)))]
pub async fn usage(State(app): State<AppState>, Caller(t): Caller, ApiQuery(q): ApiQuery<UsageParams>) -> Result<Response, ApiError> {
    let mut group_by = Vec::new();
    for g in q.group_by {
        if !group_by.contains(&g) {
            group_by.push(g);
        }
    }
    let query = UsageQuery {
        group_by: group_by.clone(),
        from: q.starting_at.map(Timestamp::as_micros),
        to: q.ending_at.map(Timestamp::as_micros),
    };
    let rows = app.platform.store.usage_report(&t, &query).await.map_err(openma_core::DomainError::from)?;
    let lines: Vec<UsageLine> = rows.into_iter().map(line).collect();
    if q.format.unwrap_or_default() == Format::Csv {
        let mut out = String::new();
        let names: Vec<&str> = group_by
            .iter()
            .map(|g| match g {
                UsageGroup::Agent => "agent_id",
                UsageGroup::Session => "session_id",
                UsageGroup::Model => "model",
                UsageGroup::Kind => "kind",
                UsageGroup::Day => "day",
            })
            .collect();
        out.push_str(&names.iter().map(|n| n.to_string()).chain(["quantity".into(), "amount_usd".into()]).collect::<Vec<_>>().join(","));
        out.push('\n');
        for l in &lines {
            let mut cells: Vec<String> = Vec::new();
            for g in &group_by {
                let v = match g {
                    UsageGroup::Agent => l.agent_id.clone(),
                    UsageGroup::Session => l.session_id.clone(),
                    UsageGroup::Model => l.model.clone(),
                    UsageGroup::Kind => l.kind.clone(),
                    UsageGroup::Day => l.day.clone(),
                };
                cells.push(csv_field(&v.unwrap_or_default()));
            }
            cells.push(l.quantity.to_string());
            cells.push(format!("{}.{:06}", l.amount_micros / 1_000_000, l.amount_micros % 1_000_000));
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response());
    }
    let total = lines.iter().map(|l| l.amount_micros).sum();
    Ok(Json(UsageReport { data: lines, total_amount_micros: total, currency: "USD" }).into_response())
}
