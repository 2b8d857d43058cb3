//! The OpenAPI document, generated from the handlers and wire types.

use std::sync::OnceLock;

use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::http;

#[derive(OpenApi)]
#[openapi(
    info(title = "openma", description = "Self-hostable agent platform, wire-compatible with the Managed Agents API."),
    paths(
        http::ops::health, http::ops::metrics, http::ops::openapi,
        http::agents::create_agent, http::agents::get_agent, http::agents::update_agent, http::agents::list_agents,
        http::agents::archive_agent, http::agents::list_agent_versions,
        http::environments::create_environment, http::environments::get_environment, http::environments::update_environment,
        http::environments::list_environments, http::environments::delete_environment, http::environments::archive_environment,
        http::environments::get_environment_build,
        http::sessions::create_session, http::sessions::get_session, http::sessions::update_session,
        http::sessions::list_sessions, http::sessions::delete_session, http::sessions::archive_session,
        http::events::list_events, http::events::send_events, http::events::stream_events,
        http::threads::list_threads, http::threads::get_thread, http::threads::archive_thread,
        http::threads::list_thread_events, http::threads::stream_thread,
        http::vaults::create_vault, http::vaults::get_vault, http::vaults::update_vault, http::vaults::list_vaults,
        http::vaults::delete_vault, http::vaults::archive_vault, http::vaults::create_credential, http::vaults::get_credential,
        http::vaults::update_credential, http::vaults::list_credentials, http::vaults::delete_credential, http::vaults::archive_credential, http::vaults::validate_credential,
        http::memory::create_store, http::memory::get_store, http::memory::update_store, http::memory::list_stores,
        http::memory::delete_store, http::memory::archive_store, http::memory::create_memory, http::memory::get_memory,
        http::memory::update_memory, http::memory::list_memories, http::memory::delete_memory, http::memory::get_version,
        http::memory::list_versions, http::memory::redact_version,
        http::model_cards::create_model_card, http::model_cards::get_model_card, http::model_cards::update_model_card,
        http::model_cards::list_model_cards, http::model_cards::delete_model_card, http::model_cards::archive_model_card,
        http::webhooks::create_webhook_endpoint, http::webhooks::get_webhook_endpoint, http::webhooks::update_webhook_endpoint,
        http::webhooks::list_webhook_endpoints, http::webhooks::delete_webhook_endpoint, http::webhooks::regenerate_signing_secret,
        http::webhooks::list_deliveries,
        http::integrations::create_integration, http::integrations::get_integration, http::integrations::list_integrations,
        http::integrations::delete_integration,
        http::usage::usage, http::usage::export, http::usage::export_ack,
        http::files::upload_file, http::files::list_files, http::files::get_file, http::files::delete_file, http::files::download_file,
        http::skills::create_skill, http::skills::get_skill, http::skills::list_skills, http::skills::delete_skill,
        http::skills::create_version, http::skills::get_version, http::skills::list_versions, http::skills::delete_version,
        http::skills::download_version,
        http::resources::add_resource, http::resources::list_resources, http::resources::get_resource,
        http::resources::update_resource, http::resources::delete_resource,
    ),
    modifiers(&Security, &Descriptions),
    security(("bearer" = []), ("api_key" = [])),
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
        components.add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))));
    }
}

/// OpenAPI requires a description on every response; fill the ones the handlers left
/// empty with the status's reason phrase.
struct Descriptions;

impl utoipa::Modify for Descriptions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for item in doc.paths.paths.values_mut() {
            let ops = [&mut item.get, &mut item.post, &mut item.delete, &mut item.put, &mut item.patch];
            for op in ops.into_iter().flatten() {
                for (status, response) in op.responses.responses.iter_mut() {
                    if let utoipa::openapi::RefOr::T(r) = response
                        && r.description.is_empty()
                    {
                        r.description = status
                            .parse::<u16>()
                            .ok()
                            .and_then(|c| axum::http::StatusCode::from_u16(c).ok())
                            .and_then(|c| c.canonical_reason())
                            .unwrap_or("Response")
                            .to_owned();
                    }
                }
            }
        }
    }
}

/// The document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}
