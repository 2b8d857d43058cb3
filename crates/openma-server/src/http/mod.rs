//! The HTTP API, one module per resource. Handlers parse, call one domain operation and
//! render; the rules live in the core.

use axum::Router;
use openma_core::platform::ListParams;

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

pub use openma_types::query::{ArchivedParam, CreatedFilter, PageParams, SortOrder};

pub fn list_params(page: PageParams, archived: &ArchivedParam, created: &CreatedFilter, order: Option<SortOrder>) -> ListParams {
    ListParams::from_query(page, archived, created, order)
}
