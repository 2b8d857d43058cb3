//! A turn's progress and answer posted back to its provider thread, for the sessions of
//! integration threads (those `openma-integrations` created carry `integration_id` in their
//! metadata): the thread and the integration from D1, its credential opened with
//! `PLATFORM_ROOT_SECRET`, and the core's Slack or Linear messages sent over `fetch` — what
//! the native server's Slack progress stream and `Replies` observer do. The object posts it itself, so the bindings
//! stay one-way (main → integrations → agent) and the workers deploy in that order's
//! reverse without a cycle.

use openma_core::integrations::turns::TurnSummary;
use openma_core::integrations::{github, linear, open_secrets, slack};
use openma_core::ports::IntegrationStore;
use openma_core::secrets::{RootSecret, SecretBox};
use openma_core::TenantId;
use openma_types::integrations::{Integration, IntegrationProvider};
use openma_worker_common::d1::D1;
use openma_worker_common::provider_api::FetchApi;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::session::{Meta, SessionDO};

/// As many recent events as the native reply reads.
const RECENT: u32 = 500;
/// Storage key: the Slack progress message of the current turn ([`Progress`]).
const PROGRESS: &str = "slack_progress";

/// A Slack thread's message that shows the turn in progress, and what it shows.
#[derive(Serialize, Deserialize)]
struct Progress {
    /// The id of the client event that began the turn (the turn it belongs to).
    turn: String,
    channel: String,
    ts: String,
    shown: String,
    at_ms: u64,
}

/// The provider thread of an integration's session, with the credential to answer in it.
struct Thread {
    integration: Integration,
    credential: String,
    thread: String,
}

/// The session's thread, when it is one of an integration's.
async fn thread_of(object: &SessionDO, meta: &Meta) -> Result<Option<Thread>, String> {
    let db = D1::new(object.env.d1("DB").map_err(|e| e.to_string())?);
    // the metadata is the client's to edit: the binding in D1 decides
    let Some((integration_id, thread)) = db.session_integration_thread(&meta.session.id).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let tenant = TenantId::from_trusted(meta.tenant.clone());
    let Some(stored) = db.get_integration(&tenant, &integration_id).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let root = crate::model::text(&object.env, "PLATFORM_ROOT_SECRET").ok_or("openma-agent has no PLATFORM_ROOT_SECRET")?;
    let root = RootSecret::from_text(&root).ok_or("PLATFORM_ROOT_SECRET is too short")?;
    let (_, credential) = open_secrets(&SecretBox::new(root, vec![]), &tenant, &stored).map_err(|e| e.to_string())?;
    Ok(Some(Thread { integration: stored.integration, credential, thread }))
}

/// The current turn (see [`TurnSummary::of`]) and the id of the client event that began it.
async fn current_turn(object: &SessionDO) -> Result<(TurnSummary, String), String> {
    let mut recent = object.log().await.map_err(|e| e.to_string())?.page(None, true, RECENT, &[]).map_err(|e| e.to_string())?;
    recent.reverse();
    let events: Vec<Value> = recent.iter().filter_map(|e| serde_json::to_value(&e.event).ok()).collect();
    let began = events.iter().rev().find(|e| e["type"].as_str().is_some_and(|t| t.starts_with("user."))).and_then(|e| e["id"].as_str()).unwrap_or_default();
    Ok((TurnSummary::of(&events), began.to_owned()))
}

/// Keeps a Slack thread's progress message for the running turn: posted when the turn
/// begins, updated with the agent's messages (at most once a second), replaced by the
/// answer when it ends — as the native server does. A failure is logged; the turn goes on.
pub(crate) async fn turn_progress(object: &SessionDO, meta: &Meta) {
    if !meta.session.metadata.contains_key("integration_id") {
        return;
    }
    if let Err(e) = show_progress(object, meta).await {
        worker::console_warn!("session {}: cannot show the turn's progress in its Slack thread: {e}", meta.session.id);
    }
}

async fn show_progress(object: &SessionDO, meta: &Meta) -> Result<(), String> {
    let storage = object.state.storage();
    let (turn, began) = current_turn(object).await?;
    let shown: Option<Progress> = storage.get(PROGRESS).await.map_err(|e| e.to_string())?;
    let now = worker::Date::now().as_millis();
    let progress = match shown.filter(|p| p.turn == began) {
        Some(p) if p.shown == turn.text || now.saturating_sub(p.at_ms) < slack::UPDATE_EVERY_MS => return Ok(()),
        Some(mut p) => {
            let Some(t) = thread_of(object, meta).await? else { return Ok(()) };
            slack::update_message(&FetchApi, &t.integration, &t.credential, &p.channel, &p.ts, &slack::progress_text(&turn.text)).await?;
            p.shown = turn.text;
            p.at_ms = now;
            p
        }
        None => {
            let Some(t) = thread_of(object, meta).await? else { return Ok(()) };
            if t.integration.provider != IntegrationProvider::Slack {
                return Ok(());
            }
            let (channel, thread_ts) = t.thread.split_once('/').ok_or("malformed thread")?;
            let ts = slack::post_message(&FetchApi, &t.integration, &t.credential, channel, thread_ts, &slack::progress_text(&turn.text), None).await?;
            Progress { turn: began, channel: channel.to_owned(), ts, shown: turn.text, at_ms: now }
        }
    };
    storage.put(PROGRESS, progress).await.map_err(|e| e.to_string())
}

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
    let Some(t) = thread_of(object, meta).await? else { return Ok(()) };
    let (turn, began) = current_turn(object).await?;
    let storage = object.state.storage();
    // the turn's progress message becomes the answer
    let progress: Option<Progress> = storage.get(PROGRESS).await.map_err(|e| e.to_string())?;
    storage.delete(PROGRESS).await.map_err(|e| e.to_string())?;
    let placeholder = progress.filter(|p| p.turn == began).map(|p| (p.channel, p.ts));
    match t.integration.provider {
        IntegrationProvider::Slack => slack::reply(&FetchApi, &t.integration, &t.credential, &t.thread, &meta.session.id, &turn, placeholder).await,
        IntegrationProvider::Linear => linear::reply(&FetchApi, &t.integration, &t.credential, &t.thread, &turn).await,
        IntegrationProvider::Github => github::reply(&FetchApi, &t.integration, &t.credential, &t.thread, &turn, object.now().as_micros() / 1_000_000).await,
    }
}
