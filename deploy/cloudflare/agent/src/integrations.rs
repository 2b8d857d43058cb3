//! A turn's answer posted back to its provider thread, for the sessions of integration
//! threads (those `openma-integrations` created carry `integration_id` in their
//! metadata): the thread and the integration from D1, its credential opened with
//! `PLATFORM_ROOT_SECRET`, and the core's Slack or Linear reply sent over `fetch` — what the
//! native server's `Replies` observer does. The object posts it itself, so the bindings
//! stay one-way (main → integrations → agent) and the workers deploy in that order's
//! reverse without a cycle.

use openma_core::integrations::turns::TurnSummary;
use openma_core::integrations::{linear, open_secrets, slack};
use openma_core::ports::IntegrationStore;
use openma_core::secrets::{RootSecret, SecretBox};
use openma_core::TenantId;
use openma_types::integrations::IntegrationProvider;
use openma_worker_common::d1::D1;
use openma_worker_common::provider_api::FetchApi;
use serde_json::Value;

use crate::session::{Meta, SessionDO};

/// As many recent events as the native reply reads.
const RECENT: u32 = 500;

/// Posts the turn's answer; a failure is logged (the session is idle either way).
pub(crate) async fn turn_ended(object: &SessionDO, meta: &Meta) {
    if !meta.session.metadata.contains_key("integration_id") {
        return;
    }
    if let Err(e) = reply(object, meta).await {
        worker::console_error!("session {}: cannot post the turn's answer to its integration: {e}", meta.session.id);
    }
}

async fn reply(object: &SessionDO, meta: &Meta) -> Result<(), String> {
    let db = D1::new(object.env.d1("DB").map_err(|e| e.to_string())?);
    // the metadata is the client's to edit: the binding in D1 decides
    let Some((integration_id, thread)) = db.session_integration_thread(&meta.session.id).await.map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let tenant = TenantId::from_trusted(meta.tenant.clone());
    let Some(stored) = db.get_integration(&tenant, &integration_id).await.map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let root = crate::model::text(&object.env, "PLATFORM_ROOT_SECRET").ok_or("openma-agent has no PLATFORM_ROOT_SECRET")?;
    let root = RootSecret::from_text(&root).ok_or("PLATFORM_ROOT_SECRET is too short")?;
    let (_, credential) = open_secrets(&SecretBox::new(root, vec![]), &tenant, &stored).map_err(|e| e.to_string())?;
    let mut recent = object.log().await.map_err(|e| e.to_string())?.page(None, true, RECENT, &[]).map_err(|e| e.to_string())?;
    recent.reverse();
    let events: Vec<Value> = recent.iter().filter_map(|e| serde_json::to_value(&e.event).ok()).collect();
    let turn = TurnSummary::of(&events);
    let integration = &stored.integration;
    match integration.provider {
        IntegrationProvider::Slack => slack::reply(&FetchApi, integration, &credential, &thread, &meta.session.id, &turn, None).await,
        IntegrationProvider::Linear => linear::reply(&FetchApi, integration, &credential, &thread, &turn).await,
        IntegrationProvider::Github => Err("GitHub integrations are not served on the Cloudflare Workers deployment".into()),
    }
}
