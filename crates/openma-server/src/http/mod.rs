//! The HTTP API, one module per resource. Handlers parse, call one domain operation and
//! render; the rules live in the core.

use axum::Router;
use openma_core::platform::ListParams;
use openma_core::ports::{Order, TimeRange};
use openma_types::Timestamp;
use serde::Deserialize;

use crate::app::AppState;

pub mod agents;
pub mod environments;
pub mod events;
pub mod files;
pub mod integrations;
pub mod memory;
pub mod model_cards;
pub mod ops;
pub mod resources;
pub mod sessions;
pub mod skills;
pub mod threads;
pub mod usage;
pub mod vaults;
pub mod webhooks;

pub fn routes(max_file_bytes: u64) -> Router<AppState> {
    Router::new()
        .route(crate::cluster::COMMAND_ROUTE, axum::routing::post(crate::cluster::receive_command))
        .merge(ops::routes())
        .merge(agents::routes())
        .merge(environments::routes())
        .merge(sessions::routes())
        .merge(events::routes())
        .merge(threads::routes())
        .merge(vaults::routes())
        .merge(model_cards::routes())
        .merge(webhooks::routes())
        .merge(integrations::routes())
        .merge(crate::integrations::routes())
        .merge(crate::console::routes())
        .merge(files::routes(max_file_bytes))
        .merge(skills::routes())
        .merge(resources::routes())
        .merge(memory::routes())
        .merge(usage::routes())
}

/// `order=asc|desc`.
#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    Asc,
    Desc,
}

impl From<SortOrder> for Order {
    fn from(o: SortOrder) -> Self {
        match o {
            SortOrder::Asc => Order::Asc,
            SortOrder::Desc => Order::Desc,
        }
    }
}

/// The `created_at[…]` range filters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
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

impl CreatedFilter {
    pub fn range(&self) -> TimeRange {
        TimeRange {
            gt: self.created_at_gt.map(Timestamp::as_micros),
            gte: self.created_at_gte.map(Timestamp::as_micros),
            lt: self.created_at_lt.map(Timestamp::as_micros),
            lte: self.created_at_lte.map(Timestamp::as_micros),
        }
    }
}

/// `limit` and `page` of every cursor-paginated list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 100 (default 20).
    #[serde(default)]
    pub limit: Option<i64>,
    /// Opaque cursor from a previous response's `next_page` (or `prev_page`).
    #[serde(default)]
    pub page: Option<String>,
}

/// Includes archived objects when true.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ArchivedParam {
    #[serde(default)]
    pub include_archived: Option<bool>,
}

pub fn list_params(page: PageParams, archived: &ArchivedParam, created: &CreatedFilter, order: Option<SortOrder>) -> ListParams {
    ListParams {
        limit: page.limit,
        order: order.map(Order::from),
        page: page.page,
        include_archived: archived.include_archived.unwrap_or(false),
        created: created.range(),
    }
}
