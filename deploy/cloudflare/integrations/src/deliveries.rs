//! The providers' webhooks: `POST /integrations/slack/{id}/events`,
//! `/integrations/slack/{id}/interactivity`, `/integrations/github/{id}/events` and
//! `/integrations/linear/{id}/events`. Each
//! is verified with the integration's signing secret and recorded once in D1 before it is
//! acknowledged; what it asks of the session runs after the response, within the
//! request's `wait_until` (Slack wants an answer within three seconds).

use openma_core::harness::input::Input;
use openma_core::integrations::{Delivered, Integrations, github, linear, slack};
use openma_core::{Clock, DomainError};
use openma_types::integrations::IntegrationProvider;
use openma_worker_common::adapters::{WorkerClock, WorkerIds};
use openma_worker_common::d1::D1;
use openma_worker_common::errors::ApiError;
use serde_json::Value;
use worker::{Context, Env, Request, Response};

use openma_worker_common::provider_api::FetchApi;
use crate::threads;

fn plain(status: u16, text: &str) -> Result<Response, ApiError> {
    Ok(Response::ok(text).map_err(|e| ApiError::new(500, e.to_string()))?.with_status(status))
}

/// Dispatches a delivery by provider and kind.
pub async fn receive(mut req: Request, env: Env, ctx: Context, provider: &str, id: &str, kind: &str, request_id: &str) -> Result<Response, ApiError> {
    let provider = match (provider, kind) {
        ("slack", "events" | "interactivity") => IntegrationProvider::Slack,
        ("linear", "events") => IntegrationProvider::Linear,
        ("github", "events") => IntegrationProvider::Github,
        _ => return Err(ApiError::not_found(format!("no route for POST /integrations/{provider}/{id}/{kind}"))),
    };
    let body = req.bytes().await.map_err(|e| ApiError::new(400, format!("could not read the request body: {e}")))?;
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let db = crate::database(&env)?;
    let secrets = openma_worker_common::root_secret::secret_box(&env).await?;
    let integrations = Integrations { store: &db, agents: &db, environments: &db, secrets: Some(&secrets), clock: &WorkerClock, ids: &WorkerIds };
    let Some(found) = integrations.for_delivery(id, provider).await? else {
        return Err(ApiError::not_found("no such integration"));
    };
    let rejected = |why: &str| {
        worker::console_warn!("{request_id}: refused a {provider:?} delivery for integration {id}: {why}");
        Err(ApiError::unauthorized(why))
    };
    let now_ms = WorkerClock.now().as_micros() / 1_000;
    match (provider, kind) {
        (IntegrationProvider::Slack, _) => {
            let (ts, sig) = (header("x-slack-request-timestamp"), header("x-slack-signature"));
            if let Err(why) = slack::verify(&found.signing_secret, ts.as_deref(), sig.as_deref(), &body, now_ms / 1_000) {
                return rejected(why.message());
            }
            if kind == "events" { slack_event(&integrations, env, ctx, found, &body, request_id).await } else { slack_click(&db, env, ctx, found, &body, request_id).await }
        }
        (IntegrationProvider::Linear, _) => {
            let payload = match linear::verify(&found.signing_secret, header("linear-signature").as_deref(), &body, now_ms) {
                Ok(p) => p,
                Err(why) => return rejected(why),
            };
            let delivery = header("linear-delivery").unwrap_or_default();
            if delivery.is_empty() {
                return plain(400, "no Linear-Delivery");
            }
            if !integrations.first_delivery(id, &delivery).await? {
                return plain(200, "");
            }
            linear_event(env, ctx, found, &payload, request_id)
        }
        (IntegrationProvider::Github, _) => {
            if !github::verify(&found.signing_secret, header("x-hub-signature-256").as_deref(), &body) {
                return rejected("missing or wrong X-Hub-Signature-256");
            }
            let (kind, delivery) = (header("x-github-event").unwrap_or_default(), header("x-github-delivery").unwrap_or_default());
            if delivery.is_empty() {
                return plain(400, "no X-GitHub-Delivery");
            }
            if !integrations.first_delivery(id, &delivery).await? {
                return plain(200, "");
            }
            let Ok(payload) = serde_json::from_slice::<Value>(&body) else { return plain(400, "not JSON") };
            github_event(env, ctx, found, &kind, &payload, request_id)
        }
    }
}

/// An issue, pull request or comment that engages the App: its session is started or told,
/// or the tool calls it waits on are answered, after the response.
fn github_event(env: Env, ctx: Context, found: Delivered, kind: &str, payload: &Value, request_id: &str) -> Result<Response, ApiError> {
    let Some(e) = github::Engagement::of(&found.integration, kind, payload) else { return plain(200, "") };
    let request_id = request_id.to_owned();
    ctx.wait_until(async move {
        let handled = async {
            let db = crate::database(&env)?;
            let integration = &found.integration;
            let known = threads::known_session(&env, &db, &found.tenant, &integration.id, &e.thread()).await?;
            if let (Some(allow), Some(session)) = (e.answer(integration), &known) {
                return threads::confirm_pending(&env, &found.tenant, session, allow, &e.who(), &request_id).await.map(drop);
            }
            // a new session gets the repository, cloned with an installation token
            let clone = github::Engagement::clones(integration);
            let token = if clone && known.is_none() {
                Some(github::installation_token(&FetchApi, integration, &found.credential, e.installation, now_secs()).await.map_err(|m| ApiError::new(502, m))?)
            } else {
                None
            };
            let (session, created) = threads::thread_session(&env, &db, &found.tenant, integration, &e.thread(), || e.session_request(&integration.id, token), &request_id).await?;
            threads::say(&env, &found.tenant, &session, &e.prompt(created, clone), &request_id).await
        }
        .await;
        if let Err(err) = handled {
            worker::console_warn!("{request_id}: integration {}: cannot pass a GitHub event to its session: {}", found.integration.id, err.message());
        }
    });
    plain(200, "")
}

fn now_secs() -> i64 {
    WorkerClock.now().as_micros() / 1_000_000
}

async fn slack_event(integrations: &Integrations<'_>, env: Env, ctx: Context, found: Delivered, body: &[u8], request_id: &str) -> Result<Response, ApiError> {
    let Ok(payload) = serde_json::from_slice::<Value>(body) else { return plain(400, "not JSON") };
    let (event_id, message) = match slack::Delivery::of(&payload) {
        Ok(slack::Delivery::Challenge(answer)) => return Response::from_json(&answer).map_err(|e| ApiError::new(500, e.to_string())),
        Ok(slack::Delivery::Other) => return plain(200, ""),
        Ok(slack::Delivery::Event { event_id, message }) => (event_id, message),
        Err(why) => return plain(400, why),
    };
    if !integrations.first_delivery(&found.integration.id, &event_id).await? {
        return plain(200, "");
    }
    let Some(message) = message else { return plain(200, "") };
    let request_id = request_id.to_owned();
    ctx.wait_until(async move {
        let db = match crate::database(&env) {
            Ok(db) => db,
            Err(_) => return,
        };
        let started = async {
            let (session, _) = threads::thread_session(&env, &db, &found.tenant, &found.integration, &message.thread(), || message.session_request(&found.integration.id), &request_id).await?;
            threads::say(&env, &found.tenant, &session, &message.prompt(), &request_id).await
        }
        .await;
        if let Err(e) = started {
            let why = e.message();
            worker::console_warn!("{request_id}: integration {}: cannot pass a Slack message to its session: {why}", found.integration.id);
            let text = format!("Sorry, the agent could not take this message: {why}");
            let _ = slack::post_message(&FetchApi, &found.integration, &found.credential, &message.channel, &message.thread_ts, &text, None).await;
        }
    });
    plain(200, "")
}

async fn slack_click(db: &D1, env: Env, ctx: Context, found: Delivered, body: &[u8], request_id: &str) -> Result<Response, ApiError> {
    use openma_core::ports::IntegrationStore;
    let Some((user, clicks)) = slack::clicks(body) else { return plain(400, "no payload") };
    let mut answers = Vec::new();
    for click in clicks {
        // a button only acts on a session of this integration
        match db.session_integration_thread(&click.session_id).await.map_err(DomainError::from)? {
            Some((integration, _)) if integration == found.integration.id => answers.push(click),
            _ => return Err(ApiError::new(403, "the session does not belong to this integration")),
        }
    }
    let request_id = request_id.to_owned();
    ctx.wait_until(async move {
        let Ok(db) = crate::database(&env) else { return };
        let Ok(ws) = openma_worker_common::sessions::WorkerSessions::new(&env) else { return };
        for click in answers {
            let applied = async {
                let session = ws.sessions(&db).load(&found.tenant, &click.session_id).await?;
                let answer = Input::Confirmation { tool_use_id: click.tool_use_id, allow: click.allow, deny_message: (!click.allow).then(|| slack::denied_by(&user)) };
                threads::send(&env, &found.tenant, &session, &[answer], &request_id).await
            }
            .await;
            if let Err(e) = applied {
                worker::console_log!("{request_id}: session {}: a Slack confirmation was not applied: {}", click.session_id, e.message());
            }
        }
    });
    plain(200, "")
}

fn linear_event(env: Env, ctx: Context, found: Delivered, payload: &Value, request_id: &str) -> Result<Response, ApiError> {
    let engagement = match linear::Engagement::of(payload) {
        Ok(Some(e)) => e,
        Ok(None) => return plain(200, ""),
        Err(why) => return plain(400, why),
    };
    let request_id = request_id.to_owned();
    ctx.wait_until(async move {
        let handled = async {
            if engagement.created {
                linear::acknowledge(&FetchApi, &found.integration, &found.credential, &engagement.agent_session).await.map_err(|e| ApiError::new(502, e))?;
            }
            let db = crate::database(&env)?;
            if let Some(allow) = engagement.answer()
                && let Some(session) = threads::known_session(&env, &db, &found.tenant, &found.integration.id, &engagement.agent_session).await?
            {
                return threads::confirm_pending(&env, &found.tenant, &session, allow, linear::WHO, &request_id).await.map(drop);
            }
            let (session, _) =
                threads::thread_session(&env, &db, &found.tenant, &found.integration, &engagement.agent_session, || engagement.session_request(&found.integration.id), &request_id)
                    .await?;
            threads::say(&env, &found.tenant, &session, &engagement.text, &request_id).await
        }
        .await;
        if let Err(e) = handled {
            worker::console_warn!("{request_id}: integration {}: cannot pass a Linear event to its session: {}", found.integration.id, e.message());
        }
    });
    plain(200, "")
}
