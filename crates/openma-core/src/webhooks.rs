//! Outbound webhooks: organization endpoints, and the outbox of deliveries to them.
//!
//! Domain operations that a subscriber may care about (a session created or changing
//! status, an agent, environment, vault or memory store created, archived or deleted) call
//! [`Platform::announce`] once they have been stored. It writes one queued delivery per
//! enabled, subscribed endpoint into the `webhook_deliveries` table and returns: it never
//! sends anything, so no request or turn waits on a receiver. The server's delivery worker
//! sends what is due. The queue is unique per (endpoint, event), so an event is queued at
//! most once per endpoint, and every attempt carries the event id as `webhook-id`.
//!
//! The outbox row is written right after the change it reports, not in its transaction:
//! a crash between the two loses that notification (never duplicates one). Binding the
//! two would mean every store write of five resources carries the outbox; the one-call
//! hook keeps them apart.
//!
//! `data.organization_id` and `data.workspace_id` are both the tenant id: openma has one
//! workspace per tenant.
//!
//! The signing secret is 32 random bytes, shown once as `whsec_` + base64 and sealed at
//! rest (bound to the tenant and the endpoint).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use openma_types::Timestamp;
use openma_types::webhooks::{
    CreateWebhookEndpointRequest, EVENT_TYPES, IdPage, NewWebhookEndpoint, UpdateWebhookEndpointRequest, WebhookDelivery,
    WebhookDeliveryStatus, WebhookDeliveryTag, WebhookEndpoint, WebhookEndpointState, WebhookEvent, WebhookEventData,
};
use sha2::Digest;

use std::time::Duration;

use crate::error::{DomainError, DomainResult, StoreError};
use crate::paging::Page;
use crate::platform::{ListParams, Platform, UPDATE_ATTEMPTS, list_query, position_of};
use crate::ports::{Announcer, Clock, IdGen, ListQuery, Order, TimeRange, WebhookStore};
use crate::secrets::{Binding, SecretBox, SecretError};
use crate::tenancy::TenantId;
use crate::validate;

/// Endpoints a tenant may hold (every announcement reads them all).
pub const ENDPOINTS_PER_TENANT: i64 = 50;
/// Attempts per delivery, the first included (as the hosted platform does).
pub const MAX_ATTEMPTS: i64 = 3;
pub const PURPOSE: &str = "webhook_signing_secret";
const FIELD: &str = "signing_secret";
const SECRET_PREFIX: &str = "whsec_";

/// An endpoint with what only the server keeps: its sealed signing secret.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredWebhookEndpoint {
    pub endpoint: WebhookEndpoint,
    pub sealed_secret: String,
}

/// A queued delivery: the row of the outbox.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedDelivery {
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    /// The JSON body, exactly as signed and sent.
    pub payload: String,
    pub status: WebhookDeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl QueuedDelivery {
    pub fn to_wire(&self) -> WebhookDelivery {
        WebhookDelivery {
            id: self.id.clone(),
            tag: WebhookDeliveryTag::default(),
            endpoint_id: self.endpoint_id.clone(),
            event_id: self.event_id.clone(),
            event_type: self.event_type.clone(),
            status: self.status,
            attempts: self.attempts,
            last_response_status: self.last_status,
            last_error: self.last_error.clone(),
            next_attempt_at: (self.status == WebhookDeliveryStatus::Pending).then_some(self.next_attempt_at),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptOutcome {
    pub status: WebhookDeliveryStatus,
    pub next_attempt_at: Timestamp,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub at: Timestamp,
}

fn binding<'a>(tenant: &'a TenantId, endpoint_id: &'a str) -> Binding<'a> {
    Binding { purpose: PURPOSE, tenant, owner: endpoint_id, field: FIELD }
}

/// The key bytes an endpoint's deliveries are signed with (for the server's worker only).
pub fn open_signing_key(secrets: &SecretBox, tenant: &TenantId, e: &StoredWebhookEndpoint) -> Result<Vec<u8>, SecretError> {
    let plain = secrets.open(binding(tenant, &e.endpoint.id), &e.sealed_secret)?;
    let text = String::from_utf8(plain).map_err(|_| SecretError::Malformed)?;
    let b64 = text.strip_prefix(SECRET_PREFIX).ok_or(SecretError::Malformed)?;
    STANDARD.decode(b64).map_err(|_| SecretError::Malformed)
}

fn check_events(events: &[String]) -> DomainResult<Vec<String>> {
    if events.is_empty() {
        return Err(DomainError::invalid("`enabled_events` must list at least one event type"));
    }
    let mut out: Vec<String> = Vec::new();
    for e in events {
        if openma_types::webhooks::UNDELIVERED_EVENT_TYPES.contains(&e.as_str()) {
            return Err(DomainError::unsupported(format!("webhook event type `{e}` (not delivered by this server yet)")));
        }
        if !EVENT_TYPES.contains(&e.as_str()) {
            return Err(DomainError::invalid(format!("`enabled_events` lists unknown event type `{e}`; known types: {}", EVENT_TYPES.join(", "))));
        }
        if !out.contains(e) {
            out.push(e.clone());
        }
    }
    Ok(out)
}

fn check_texts(name: Option<&String>, description: Option<&String>) -> DomainResult<()> {
    if let Some(n) = name {
        validate::length("name", n, 0, 255)?;
    }
    if let Some(d) = description {
        validate::length("description", d, 0, 2048)?;
    }
    Ok(())
}

/// The body of one event, as every endpoint receives it.
pub fn event_body(event_id: &str, kind: &str, object_id: &str, tenant: &TenantId, at: Timestamp, extra: &serde_json::Map<String, serde_json::Value>) -> String {
    let event = WebhookEvent {
        id: event_id.to_owned(),
        created_at: at,
        tag: Default::default(),
        data: WebhookEventData {
            kind: kind.to_owned(),
            id: object_id.to_owned(),
            organization_id: tenant.as_str().to_owned(),
            workspace_id: tenant.as_str().to_owned(),
            extra: extra.clone(),
        },
    };
    serde_json::to_string(&event).expect("webhook events serialise")
}

/// The `Page`-style query of the endpoint list.
#[derive(Clone, Debug, Default)]
pub struct IdPageParams {
    pub limit: Option<i64>,
    pub order: Option<Order>,
    pub after_id: Option<String>,
    pub before_id: Option<String>,
}

impl From<openma_types::query::EndpointListParams> for IdPageParams {
    fn from(q: openma_types::query::EndpointListParams) -> Self {
        IdPageParams { limit: q.limit, order: q.order.map(Into::into), after_id: q.after_id, before_id: q.before_id }
    }
}

/// The events a change of a session's status is announced as: the status type's own name
/// and, for running and idle, the payload table's shorter name of the same change.
pub fn status_events(status: openma_types::sessions::SessionStatus) -> &'static [&'static str] {
    use openma_types::sessions::SessionStatus;
    match status {
        SessionStatus::Running => &["session.status_run_started", "session.running"],
        SessionStatus::Idle => &["session.status_idled", "session.idled"],
        SessionStatus::Rescheduling => &["session.status_rescheduled"],
        SessionStatus::Terminated => &["session.status_terminated"],
    }
}

/// The event a turn's stop reason is announced as, if any (whatever the status was).
pub fn stop_event(reason: &openma_types::events::StopReason) -> Option<&'static str> {
    use openma_types::events::StopReason;
    match reason {
        StopReason::RequiresAction { .. } => Some("session.requires_action"),
        StopReason::BudgetReached => Some("session.budget_reached"),
        _ => None,
    }
}

/// The Standard Webhooks signature header value of one attempt.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// How long a receiver has to answer an attempt.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of a failed response's reason kept in the log.
const MAX_ERROR: usize = 300;

/// Sends one signed attempt: the native server's pinned HTTP client, or `fetch` in a Worker.
/// Each refuses destinations that name private places (unless the test-only switch is on).
#[async_trait::async_trait]
pub trait WebhookSender: Send + Sync {
    /// POSTs `body` with `headers`; the status on 2xx, else the status (if any) and why.
    async fn post(&self, url: &str, headers: &[(&'static str, String)], body: &str) -> Result<i64, (Option<i64>, String)>;
}

/// The webhook operations, bound to one set of adapters. As the [`Announcer`], it queues
/// deliveries; [`Webhooks::attempt`] sends one.
pub struct Webhooks<'a> {
    pub store: &'a dyn WebhookStore,
    pub clock: &'a dyn Clock,
    pub ids: &'a dyn IdGen,
    /// Seals the signing secrets: creating an endpoint needs it, announcing does not.
    pub secrets: Option<&'a SecretBox>,
}

fn later(now: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_micros(now.as_micros().saturating_add(d.as_micros() as i64))
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_ERROR {
        let mut end = MAX_ERROR;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl Webhooks<'_> {
    fn secrets(&self) -> DomainResult<&SecretBox> {
        self.secrets.ok_or_else(|| DomainError::invalid("secrets are not available: the server has no root secret"))
    }

    /// A fresh `whsec_` secret and its seal for endpoint `id`.
    fn new_signing_secret(&self, tenant: &TenantId, id: &str) -> DomainResult<(String, String)> {
        let entropy = sha2::Sha256::digest(self.ids.api_key_secret().as_bytes());
        let secret = format!("{SECRET_PREFIX}{}", STANDARD.encode(entropy));
        let sealed = self.secrets()?.seal(binding(tenant, id), secret.as_bytes(), self.ids.nonce());
        Ok((secret, sealed))
    }

    pub async fn create_endpoint(&self, tenant: &TenantId, req: &CreateWebhookEndpointRequest) -> DomainResult<NewWebhookEndpoint> {
        validate::http_url("url", &req.url)?;
        check_texts(req.name.as_ref(), req.description.as_ref())?;
        let enabled_events = check_events(&req.enabled_events)?;
        let id = self.ids.new_id("whep");
        let (secret, sealed_secret) = self.new_signing_secret(tenant, &id)?;
        let now = self.clock.now();
        let endpoint = WebhookEndpoint {
            id,
            created_at: now,
            description: req.description.clone().unwrap_or_default(),
            disabled_reason: String::new(),
            enabled_events,
            name: req.name.clone().unwrap_or_default(),
            state: WebhookEndpointState::Enabled,
            updated_at: now,
            url: req.url.clone(),
        };
        let stored = StoredWebhookEndpoint { endpoint, sealed_secret };
        if !self.store.insert_webhook_endpoint(tenant, &stored, ENDPOINTS_PER_TENANT).await? {
            return Err(DomainError::invalid(format!("this organization already holds {ENDPOINTS_PER_TENANT} webhook endpoints; delete one first")));
        }
        Ok(NewWebhookEndpoint { endpoint: stored.endpoint, signing_secret: secret })
    }

    async fn load_endpoint(&self, tenant: &TenantId, id: &str) -> DomainResult<StoredWebhookEndpoint> {
        let missing = || DomainError::not_found("webhook endpoint", id);
        if !validate::looks_like_id(id, "whep_") {
            return Err(missing());
        }
        self.store.get_webhook_endpoint(tenant, id).await?.ok_or_else(missing)
    }

    pub async fn get_endpoint(&self, tenant: &TenantId, id: &str) -> DomainResult<WebhookEndpoint> {
        Ok(self.load_endpoint(tenant, id).await?.endpoint)
    }

    pub async fn update_endpoint(&self, tenant: &TenantId, id: &str, req: &UpdateWebhookEndpointRequest) -> DomainResult<WebhookEndpoint> {
        if let Some(url) = &req.url {
            validate::http_url("url", url)?;
        }
        check_texts(req.name.as_ref(), req.description.as_ref())?;
        let events = match &req.enabled_events {
            Some(e) if !e.is_empty() => Some(check_events(e)?),
            _ => None,
        };
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.load_endpoint(tenant, id).await?;
            let mut next = current.clone();
            let e = &mut next.endpoint;
            if let Some(v) = &req.url {
                e.url = v.clone();
            }
            if let Some(v) = &req.name {
                e.name = v.clone();
            }
            if let Some(v) = &req.description {
                e.description = v.clone();
            }
            if let Some(v) = &events {
                e.enabled_events = v.clone();
            }
            if let Some(s) = req.state {
                e.state = s;
                if s == WebhookEndpointState::Enabled {
                    e.disabled_reason.clear();
                }
            }
            if next == current {
                return Ok(next.endpoint);
            }
            next.endpoint.updated_at = self.clock.now().strictly_after(current.endpoint.updated_at);
            if self.store.update_webhook_endpoint(tenant, &next, current.endpoint.updated_at).await? {
                return Ok(next.endpoint);
            }
        }
        Err(DomainError::conflict(format!("webhook endpoint `{id}` is being changed concurrently; retry")))
    }

    /// Replaces the signing secret; deliveries are signed with the new one from now on.
    pub async fn regenerate_secret(&self, tenant: &TenantId, id: &str) -> DomainResult<String> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.load_endpoint(tenant, id).await?;
            let (secret, sealed_secret) = self.new_signing_secret(tenant, id)?;
            let mut next = current.clone();
            next.sealed_secret = sealed_secret;
            next.endpoint.updated_at = self.clock.now().strictly_after(current.endpoint.updated_at);
            if self.store.update_webhook_endpoint(tenant, &next, current.endpoint.updated_at).await? {
                return Ok(secret);
            }
        }
        Err(DomainError::conflict(format!("webhook endpoint `{id}` is being changed concurrently; retry")))
    }

    /// Deletes an endpoint with its delivery log; queued deliveries to it are dropped.
    pub async fn delete_endpoint(&self, tenant: &TenantId, id: &str) -> DomainResult<()> {
        if !validate::looks_like_id(id, "whep_") || !self.store.delete_webhook_endpoint(tenant, id).await? {
            return Err(DomainError::not_found("webhook endpoint", id));
        }
        Ok(())
    }

    /// Endpoints in `Page` style. `before_id` returns the first `limit` endpoints that come
    /// before it in list order (as the SDK documents), not the ones just before it.
    pub async fn list_endpoints(&self, tenant: &TenantId, p: &IdPageParams) -> DomainResult<IdPage<WebhookEndpoint>> {
        let limit = match p.limit.unwrap_or(0) {
            0 => 20,
            n if (1..=100).contains(&n) => n as u32,
            n => return Err(DomainError::invalid(format!("`limit` must be between 0 and 100, got {n}"))),
        };
        if p.after_id.is_some() && p.before_id.is_some() {
            return Err(DomainError::invalid("pass at most one of `after_id` and `before_id`"));
        }
        let order = p.order.unwrap_or(Order::Desc);
        let mut query = ListQuery { limit: limit + 1, order, after: None, include_archived: true, created: TimeRange::default() };
        let mut rows = if let Some(id) = &p.after_id {
            query.after = Some(self.endpoint_position(tenant, id).await?);
            self.store.list_webhook_endpoints(tenant, &query).await?
        } else if let Some(id) = &p.before_id {
            let stop = self.endpoint_position(tenant, id).await?;
            // every endpoint fits one read (the per-tenant cap is below the read size)
            query.limit = ENDPOINTS_PER_TENANT as u32 + 1;
            let all = self.store.list_webhook_endpoints(tenant, &query).await?;
            all.into_iter().take_while(|e| position_of(e.endpoint.created_at, &e.endpoint.id) != stop).collect()
        } else {
            self.store.list_webhook_endpoints(tenant, &query).await?
        };
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let data: Vec<WebhookEndpoint> = rows.into_iter().map(|e| e.endpoint).collect();
        Ok(IdPage {
            has_more,
            first_id: data.first().map(|e| e.id.clone()),
            last_id: data.last().map(|e| e.id.clone()),
            data,
        })
    }

    /// Where a paging cursor (`after_id`/`before_id`) stands in the list.
    async fn endpoint_position(&self, tenant: &TenantId, id: &str) -> DomainResult<crate::ports::Position> {
        match self.store.get_webhook_endpoint(tenant, id).await? {
            Some(e) => Ok(position_of(e.endpoint.created_at, id)),
            None => Err(DomainError::invalid(format!("no webhook endpoint `{id}` to page from"))),
        }
    }

    /// The delivery log of an endpoint, newest first.
    pub async fn list_deliveries(&self, tenant: &TenantId, endpoint_id: &str, p: &ListParams) -> DomainResult<Page<WebhookDelivery>> {
        self.load_endpoint(tenant, endpoint_id).await?;
        let (req, query) = list_query(p, Order::Desc, crate::paging::MAX_LIMIT)?;
        let rows = self.store.list_webhook_deliveries(tenant, endpoint_id, &query).await?;
        Ok(req.finish(rows, |d| position_of(d.created_at, &d.id)).map(|d| d.to_wire()))
    }

    /// Every endpoint of the tenant (announcements and re-sealing read them all).
    async fn all_endpoints(&self, tenant: &TenantId) -> DomainResult<Vec<StoredWebhookEndpoint>> {
        let query = ListQuery { limit: ENDPOINTS_PER_TENANT as u32 + 1, order: Order::Asc, after: None, include_archived: true, created: TimeRange::default() };
        Ok(self.store.list_webhook_endpoints(tenant, &query).await?)
    }

    /// Queues event `kind` about object `object_id`, with the type's `extra` data fields,
    /// for every enabled endpoint of the tenant that subscribes to it; returns the event id
    /// when any endpoint does.
    pub async fn queue(&self, tenant: &TenantId, kind: &str, object_id: &str, extra: &serde_json::Map<String, serde_json::Value>) -> DomainResult<Option<String>> {
        Ok(self.queue_all(tenant, &[kind], object_id, extra).await?.pop())
    }

    /// [`Self::queue`] for several events about one object (a status change is two or three),
    /// reading the tenant's endpoints and writing the outbox once for them all; returns the
    /// ids of the events some endpoint subscribes to.
    pub async fn queue_all(&self, tenant: &TenantId, kinds: &[&str], object_id: &str, extra: &serde_json::Map<String, serde_json::Value>) -> DomainResult<Vec<String>> {
        debug_assert!(kinds.iter().all(|k| EVENT_TYPES.contains(k)), "announced an unknown event type in {kinds:?}");
        let endpoints = self.all_endpoints(tenant).await?;
        let now = self.clock.now();
        let (mut events, mut rows) = (Vec::new(), Vec::new());
        for &kind in kinds {
            let targets: Vec<_> = endpoints
                .iter()
                .filter(|e| e.endpoint.state == WebhookEndpointState::Enabled && e.endpoint.enabled_events.iter().any(|k| k == kind))
                .collect();
            if targets.is_empty() {
                continue;
            }
            let event_id = self.ids.new_id("wevt");
            let payload = event_body(&event_id, kind, object_id, tenant, now, extra);
            rows.extend(targets.iter().map(|e| QueuedDelivery {
                id: self.ids.new_id("whdl"),
                endpoint_id: e.endpoint.id.clone(),
                event_id: event_id.clone(),
                event_type: kind.to_owned(),
                payload: payload.clone(),
                status: WebhookDeliveryStatus::Pending,
                attempts: 0,
                next_attempt_at: now,
                last_status: None,
                last_error: None,
                created_at: now,
                updated_at: now,
            }));
            events.push(event_id);
        }
        if !rows.is_empty() {
            self.store.enqueue_webhook_deliveries(tenant, &rows).await?;
        }
        Ok(events)
    }

    /// Re-seals every webhook signing secret of a tenant under `secrets`' current root
    /// (rotation). Returns how many were re-sealed.
    pub async fn reseal_secrets(&self, tenant: &TenantId, secrets: &SecretBox) -> DomainResult<usize> {
        let mut done = 0;
        for e in self.all_endpoints(tenant).await? {
            let mut current = e;
            for attempt in 0.. {
                let mut next = current.clone();
                next.sealed_secret = secrets
                    .reseal(binding(tenant, &current.endpoint.id), &current.sealed_secret, self.ids.nonce())
                    .map_err(|err| DomainError::invalid(format!("webhook endpoint `{}`: {err}", current.endpoint.id)))?;
                // the guard is the unchanged `updated_at`: a re-seal is not a change a client sees
                if self.store.update_webhook_endpoint(tenant, &next, current.endpoint.updated_at).await? {
                    done += 1;
                    break;
                }
                if attempt + 1 >= UPDATE_ATTEMPTS {
                    return Err(DomainError::conflict(format!("webhook endpoint `{}` is being changed concurrently; retry", current.endpoint.id)));
                }
                match self.store.get_webhook_endpoint(tenant, &current.endpoint.id).await? {
                    Some(c) => current = c,
                    None => break,
                }
            }
        }
        Ok(done)
    }

    /// Claims and sends one due delivery, signed per Standard Webhooks, and records what
    /// came of it. The claim counts the attempt and moves its due time past the request's
    /// timeout, so no other scan takes it in flight and one whose process died mid-flight
    /// is sent again once that lease ends (receivers dedupe by `webhook-id`, the event id).
    /// A 2xx marks it delivered; anything else waits `delays[attempt - 1]` (or the last),
    /// up to [`MAX_ATTEMPTS`], then marks it failed.
    pub async fn attempt(&self, tenant: &TenantId, d: &QueuedDelivery, sender: &dyn WebhookSender, delays: &[Duration]) -> Result<(), StoreError> {
        let now = self.clock.now();
        let finish = |status, last_status, last_error: Option<String>| AttemptOutcome { status, next_attempt_at: now, last_status, last_error, at: now };
        if d.attempts >= MAX_ATTEMPTS {
            // its last attempt was in flight when a process stopped
            let error = d.last_error.clone().or_else(|| Some("no answer to the last attempt".into()));
            return self.store.record_webhook_attempt(tenant, &d.id, &finish(WebhookDeliveryStatus::Failed, d.last_status, error)).await;
        }
        let Some(endpoint) = self.store.get_webhook_endpoint(tenant, &d.endpoint_id).await? else { return Ok(()) };
        if endpoint.endpoint.state == WebhookEndpointState::Disabled {
            let error = Some("the endpoint is disabled".into());
            return self.store.record_webhook_attempt(tenant, &d.id, &finish(WebhookDeliveryStatus::Failed, None, error)).await;
        }
        let lease = later(now, TIMEOUT + Duration::from_secs(20));
        if !self.store.claim_webhook_delivery(tenant, &d.id, d.attempts, now, lease).await? {
            return Ok(());
        }
        let attempt = d.attempts + 1;
        let result = match self.secrets.map(|s| open_signing_key(s, tenant, &endpoint)) {
            Some(Ok(key)) => {
                let timestamp = now.as_micros() / 1_000_000;
                let headers = [
                    ("content-type", "application/json".to_owned()),
                    ("webhook-id", d.event_id.clone()),
                    ("webhook-timestamp", timestamp.to_string()),
                    ("webhook-signature", signature(&key, &d.event_id, timestamp, &d.payload)),
                ];
                sender.post(&endpoint.endpoint.url, &headers, &d.payload).await.map_err(|(code, why)| (code, truncate(why)))
            }
            Some(Err(e)) => Err((None, format!("cannot open the signing secret: {e}"))),
            None => Err((None, "the server has no root secret".into())),
        };
        let now = self.clock.now();
        let outcome = match result {
            Ok(code) => AttemptOutcome { status: WebhookDeliveryStatus::Delivered, next_attempt_at: now, last_status: Some(code), last_error: None, at: now },
            Err((code, error)) => {
                let retry = (attempt < MAX_ATTEMPTS).then(|| delays.get(attempt as usize - 1).or(delays.last()).copied().unwrap_or_default());
                tracing::info!(tenant = tenant.as_str(), delivery = d.id, attempt, error = %error, "webhook delivery attempt failed");
                AttemptOutcome {
                    status: if retry.is_some() { WebhookDeliveryStatus::Pending } else { WebhookDeliveryStatus::Failed },
                    next_attempt_at: later(now, retry.unwrap_or_default()),
                    last_status: code,
                    last_error: Some(error),
                    at: now,
                }
            }
        };
        self.store.record_webhook_attempt(tenant, &d.id, &outcome).await
    }
}

/// A failure to queue is logged, never returned: the change it reports is already stored.
#[async_trait::async_trait]
impl Announcer for Webhooks<'_> {
    async fn announce_with(&self, tenant: &TenantId, kind: &str, object_id: &str, extra: serde_json::Map<String, serde_json::Value>) {
        if let Err(e) = self.queue(tenant, kind, object_id, &extra).await {
            tracing::warn!(tenant = tenant.as_str(), kind, object_id, error = %e, "cannot queue a webhook event");
        }
    }

    async fn announce_all(&self, tenant: &TenantId, kinds: &[&str], object_id: &str) {
        if let Err(e) = self.queue_all(tenant, kinds, object_id, &serde_json::Map::new()).await {
            tracing::warn!(tenant = tenant.as_str(), ?kinds, object_id, error = %e, "cannot queue webhook events");
        }
    }
}

impl Platform {
    /// The webhook operations on this platform's store, with its root secret.
    pub fn webhooks(&self) -> Webhooks<'_> {
        Webhooks { store: &*self.store, clock: &*self.clock, ids: &*self.ids, secrets: self.secrets.as_deref() }
    }

    pub async fn create_webhook_endpoint(&self, tenant: &TenantId, req: &CreateWebhookEndpointRequest) -> DomainResult<NewWebhookEndpoint> {
        self.webhooks().create_endpoint(tenant, req).await
    }

    pub async fn get_webhook_endpoint(&self, tenant: &TenantId, id: &str) -> DomainResult<WebhookEndpoint> {
        self.webhooks().get_endpoint(tenant, id).await
    }

    pub async fn update_webhook_endpoint(&self, tenant: &TenantId, id: &str, req: &UpdateWebhookEndpointRequest) -> DomainResult<WebhookEndpoint> {
        self.webhooks().update_endpoint(tenant, id, req).await
    }

    pub async fn regenerate_webhook_secret(&self, tenant: &TenantId, id: &str) -> DomainResult<String> {
        self.webhooks().regenerate_secret(tenant, id).await
    }

    pub async fn delete_webhook_endpoint(&self, tenant: &TenantId, id: &str) -> DomainResult<()> {
        self.webhooks().delete_endpoint(tenant, id).await
    }

    pub async fn list_webhook_endpoints(&self, tenant: &TenantId, p: &IdPageParams) -> DomainResult<IdPage<WebhookEndpoint>> {
        self.webhooks().list_endpoints(tenant, p).await
    }

    pub async fn list_webhook_deliveries(&self, tenant: &TenantId, endpoint_id: &str, p: &ListParams) -> DomainResult<Page<WebhookDelivery>> {
        self.webhooks().list_deliveries(tenant, endpoint_id, p).await
    }

    /// Queues event `kind` about `object_id` for the tenant's subscribed endpoints; the
    /// event id when any endpoint subscribes.
    pub async fn announce(&self, tenant: &TenantId, kind: &str, object_id: &str) -> DomainResult<Option<String>> {
        self.webhooks().queue(tenant, kind, object_id, &serde_json::Map::new()).await
    }

    /// [`Self::announce`] for the domain's own hooks: a failure to queue is logged, never
    /// returned, so the change that was already stored still succeeds.
    pub async fn announce_quietly(&self, tenant: &TenantId, kind: &str, object_id: &str) {
        self.webhooks().announce(tenant, kind, object_id).await
    }

    /// [`Self::announce_quietly`] for a `vault_credential.*` event (its `data` names the vault).
    pub async fn announce_credential(&self, tenant: &TenantId, kind: &str, vault_id: &str, credential_id: &str) {
        crate::vaults::announce_credential(&self.webhooks(), tenant, kind, vault_id, credential_id).await
    }

    pub async fn reseal_webhook_secrets(&self, tenant: &TenantId, secrets: &SecretBox) -> DomainResult<usize> {
        self.webhooks().reseal_secrets(tenant, secrets).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_empty_event_lists_are_refused_and_duplicates_collapse() {
        assert!(check_events(&[]).is_err());
        assert!(check_events(&["session.exploded".into()]).is_err());
        let ok = check_events(&["session.created".into(), "external_key.failed".into(), "session.created".into()]).unwrap();
        assert_eq!(ok, vec!["session.created".to_owned(), "external_key.failed".to_owned()]);
    }

    #[test]
    fn the_body_has_the_payload_shape_with_the_tenant_as_organization_and_workspace() {
        let tenant = TenantId::from_trusted("tenant_a");
        let body = event_body("wevt_1", "session.created", "sesn_1", &tenant, Timestamp::from_micros(1_700_000_000_000_000), &serde_json::Map::new());
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["type"], "event");
        assert_eq!(v["id"], "wevt_1");
        assert_eq!(v["data"], serde_json::json!({"type": "session.created", "id": "sesn_1", "organization_id": "tenant_a", "workspace_id": "tenant_a"}));
        assert!(v["created_at"].as_str().unwrap().starts_with("2023-11-14T"));
    }
}
