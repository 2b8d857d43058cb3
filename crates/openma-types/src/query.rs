//! Query parameters shared by the list and retrieve endpoints, as the SDKs send them
//! (`limit`, `page`, `order`, `include_archived`, the `created_at[…]` brackets).
//! Parsed at the edge by every deployment (the native server and the Workers) alike.

use serde::Deserialize;

use crate::Timestamp;
use crate::memory::MemoryOperation;

/// `order=asc|desc`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    Asc,
    Desc,
}

/// The `created_at[…]` range filters.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct CreatedFilter {
    /// Only objects created after this time (exclusive).
    #[serde(rename = "created_at[gt]", default)]
    pub created_at_gt: Option<Timestamp>,
    /// Only objects created at or after this time.
    #[serde(rename = "created_at[gte]", default)]
    pub created_at_gte: Option<Timestamp>,
    /// Only objects created before this time (exclusive).
    #[serde(rename = "created_at[lt]", default)]
    pub created_at_lt: Option<Timestamp>,
    /// Only objects created at or before this time.
    #[serde(rename = "created_at[lte]", default)]
    pub created_at_lte: Option<Timestamp>,
}

/// `limit` and `page` of every cursor-paginated list.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct PageParams {
    /// Page size, 1 to 100 (default 20).
    #[serde(default)]
    pub limit: Option<i64>,
    /// Opaque cursor from a previous response's `next_page` (or `prev_page`).
    #[serde(default)]
    pub page: Option<String>,
}

/// The `Page`-style query of the webhook endpoint list (`after_id` / `before_id`).
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct EndpointListParams {
    /// Page size, 0 to 100 (0 means 20).
    #[serde(default)]
    pub limit: Option<i64>,
    /// Return the endpoints right after this one.
    #[serde(default)]
    pub after_id: Option<String>,
    /// Return the first `limit` endpoints that come before this one in list order.
    #[serde(default)]
    pub before_id: Option<String>,
    /// By `created_at`; newest first by default.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(inline))]
    pub order: Option<SortOrder>,
}

/// Filters of the file list (`GET /v1/files`).
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct FileFilter {
    /// Only files of this scope (a session id): its mounted copies and its outputs.
    #[serde(default)]
    pub scope_id: Option<String>,
    /// Only these files (at most 100; not with `page` or `limit`).
    #[serde(rename = "ids[]", alias = "ids", default)]
    pub ids: Vec<String>,
}

/// Includes archived objects when true.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct ArchivedParam {
    #[serde(default)]
    pub include_archived: Option<bool>,
}

/// `version` of a retrieve that may ask for an older version.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct VersionParam {
    /// A version number (≥ 1); omit for the latest.
    #[serde(default)]
    pub version: Option<i64>,
}

/// Whether memories and versions carry their `content`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum MemoryView {
    Basic,
    Full,
}

/// `view`: defaults to `full` on retrieve, `basic` on list, create and update.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct ViewParam {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(inline))]
    pub view: Option<MemoryView>,
}

impl ViewParam {
    pub fn full(&self, default: MemoryView) -> bool {
        self.view.unwrap_or(default) == MemoryView::Full
    }
}

/// The filters of the memory list.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct MemoryListQuery {
    /// Only memories below this directory (starts and ends with `/`).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// 0 (default): every memory below the prefix; 1: direct children, deeper ones rolled up.
    #[serde(default)]
    pub depth: Option<i64>,
}

/// `expected_content_sha256` of a delete.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct DeleteMemoryQuery {
    /// Delete only if the memory's `content_sha256` is this (64 lowercase hex characters).
    #[serde(default)]
    pub expected_content_sha256: Option<String>,
}

/// The filters of the memory version list.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct VersionListQuery {
    #[serde(default)]
    pub memory_id: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(inline))]
    pub operation: Option<MemoryOperation>,
    #[serde(default)]
    pub api_key_id: Option<String>,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub service_account_id: Option<String>,
}

/// Filters of the session list.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct SessionListParams {
    /// Only sessions of this agent.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Only sessions pinned to this agent version (with `agent_id`).
    #[serde(default)]
    pub agent_version: Option<i64>,
    /// Only sessions created by this deployment.
    #[serde(default)]
    pub deployment_id: Option<String>,
    /// Only sessions with this memory store attached.
    #[serde(default)]
    pub memory_store_id: Option<String>,
    /// Any of these statuses (repeat the parameter).
    #[serde(rename = "statuses[]", alias = "statuses", default)]
    pub statuses: Vec<crate::sessions::SessionStatus>,
    /// `desc` (default, newest first) or `asc`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(inline))]
    pub order: Option<SortOrder>,
}

/// Filters of a session's event list.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct EventListParams {
    /// Only these event types (repeat the parameter).
    #[serde(rename = "types[]", alias = "types", default)]
    pub types: Vec<String>,
    /// `asc` (default, oldest first) or `desc`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(inline))]
    pub order: Option<SortOrder>,
}

/// Where a session's event stream starts, and which previews it carries.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct StreamParams {
    /// Also stream previews (`event_start`, `event_delta`) of these event types.
    #[serde(rename = "event_deltas[]", alias = "event_deltas", default)]
    pub event_deltas: Vec<String>,
    /// Resume after this event (id or sequence number), like the `Last-Event-ID` header.
    #[serde(default)]
    pub last_event_id: Option<String>,
}

/// Filters of a session's thread list.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct ThreadFilter {
    /// Any of these statuses (repeat the parameter).
    #[serde(rename = "statuses[]", alias = "statuses", default)]
    pub statuses: Vec<crate::sessions::SessionStatus>,
}
