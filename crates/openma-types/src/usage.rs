//! `GET /v1/usage` (an openma extension): the ledger summed by agent, session, model, kind
//! and/or day, as JSON or CSV. The same wire shapes on the native server and the Workers.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// A dimension of the usage report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageGroup {
    Agent,
    Session,
    Model,
    Kind,
    Day,
}

impl UsageGroup {
    /// The `ledger_entries` expression of the dimension (a fixed list: nothing from the request).
    pub fn column(self) -> &'static str {
        match self {
            UsageGroup::Agent => "agent_id",
            UsageGroup::Session => "session_id",
            UsageGroup::Model => "model",
            UsageGroup::Kind => "kind",
            UsageGroup::Day => "(created_at / 86400000000)",
        }
    }

    /// The report's field (and CSV column) of the dimension.
    pub fn field(self) -> &'static str {
        match self {
            UsageGroup::Agent => "agent_id",
            UsageGroup::Session => "session_id",
            UsageGroup::Model => "model",
            UsageGroup::Kind => "kind",
            UsageGroup::Day => "day",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct UsageParams {
    /// Dimensions to group by: `agent`, `session`, `model`, `kind`, `day` (repeat).
    #[serde(rename = "group_by[]", alias = "group_by", default)]
    #[cfg_attr(feature = "openapi", param(value_type = Vec<String>))]
    pub group_by: Vec<UsageGroup>,
    /// Only entries at or after this time.
    #[serde(default)]
    pub starting_at: Option<Timestamp>,
    /// Only entries before this time.
    #[serde(default)]
    pub ending_at: Option<Timestamp>,
    /// `json` (default) or `csv`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>))]
    pub format: Option<UsageFormat>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageFormat {
    #[default]
    Json,
    Csv,
}

/// One line of the report.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageLine {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `YYYY-MM-DD` (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    /// Tokens; milliseconds for `runtime_ms`, `sandbox_wall_ms` and `sandbox_cpu_ms`; searches
    /// for `web_searches`; byte-hours for `file_storage`. A sum over mixed kinds when not
    /// grouped by kind.
    pub quantity: i64,
    /// List cost in micro-dollars (exact).
    pub amount_micros: i64,
    pub currency: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageReport {
    pub data: Vec<UsageLine>,
    pub total_amount_micros: i64,
    pub currency: String,
}

/// `GET /v1/usage/export`: ledger entries for an external billing system, in a stable order.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct ExportParams {
    /// Continue after this cursor; omit to continue after the last acknowledged one.
    #[serde(default)]
    pub after: Option<String>,
    /// Rows per page, 1 to 1000 (default 500).
    #[serde(default)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportEntry {
    pub cursor: String,
    pub id: String,
    pub session_id: String,
    pub agent_id: String,
    pub model: String,
    pub kind: String,
    pub quantity: i64,
    /// Micro-dollars per million tokens, or per hour for `runtime_ms`.
    pub unit_price_micros: i64,
    pub amount_micros: i64,
    pub currency: String,
    /// The event that caused the entry; with `kind` it identifies the entry for good.
    pub source: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportPage {
    pub data: Vec<ExportEntry>,
    /// Pass as `after` to continue, and acknowledge it once the page is stored.
    pub next_cursor: String,
    pub acknowledged_cursor: String,
    pub has_more: bool,
}

/// `POST /v1/usage/export/ack`: everything up to `cursor` is stored by the billing system.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportAck {
    pub cursor: String,
}
