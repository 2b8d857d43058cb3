//! Organization webhook endpoints (`/v1/organizations/webhooks`, beta `webhooks-2026-10-07`)
//! and the deliveries sent to them. The signing secret is shown once: only
//! [`NewWebhookEndpoint`] and [`WebhookSigningSecret`] carry it.

use serde::{Deserialize, Serialize};

use crate::common::Timestamp;
use crate::literal;

literal!(WebhookEndpointDeletedTag = "webhook_endpoint_deleted");
literal!(WebhookDeliveryTag = "webhook_delivery");
literal!(WebhookEventTag = "event");

/// The event types an endpoint may subscribe to: the five of the SDK's `enabled_events`
/// and the session, agent, environment, vault and memory store types of the payload table
/// that this server delivers.
pub const EVENT_TYPES: &[&str] = &[
    "external_key.failed",
    "external_key.recovered",
    "user_profile.enforcement_action_opened",
    "user_profile.enforcement_action_resolved",
    "user_profile.program_status_updated",
    "session.created",
    "session.archived",
    "session.deleted",
    "session.status_rescheduled",
    "session.status_run_started",
    "session.status_idled",
    "session.status_terminated",
    "agent.created",
    "agent.archived",
    "environment.created",
    "environment.archived",
    "environment.deleted",
    "vault.created",
    "vault.archived",
    "vault.deleted",
    "vault_credential.created",
    "vault_credential.archived",
    "vault_credential.deleted",
    "vault_credential.refresh_failed",
    "session.running",
    "session.idled",
    "session.requires_action",
    "session.updated",
    "session.budget_reached",
    "agent.updated",
    "environment.updated",
    "memory_store.created",
    "memory_store.archived",
    "memory_store.deleted",
];

/// Types of the payload table this server does not deliver yet: subscribing to one is
/// refused (`unsupported_feature`) rather than accepted and never sent.
pub const UNDELIVERED_EVENT_TYPES: &[&str] = &[
    // no session waits in a queue before it runs here
    "session.pending",
    // openma sessions have one thread and no outcome evaluation
    "session.thread_created",
    "session.thread_idled",
    "session.thread_terminated",
    "session.outcome_evaluation_ended",
    // agents are archived, never deleted
    "agent.deleted",
];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum WebhookEndpointState {
    #[default]
    Enabled,
    Disabled,
}

/// `BetaOrganizationWebhookEndpoint`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookEndpoint {
    pub id: String,
    pub created_at: Timestamp,
    pub description: String,
    pub disabled_reason: String,
    pub enabled_events: Vec<String>,
    pub name: String,
    pub state: WebhookEndpointState,
    pub updated_at: Timestamp,
    pub url: String,
}

/// `BetaNewOrganizationWebhookEndpoint`: the endpoint with its signing secret, once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewWebhookEndpoint {
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
    /// `whsec_` + base64 of the key bytes. No other response returns it.
    pub signing_secret: String,
}

/// `BetaOrganizationWebhookEndpointSigningSecret`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookSigningSecret {
    pub signing_secret: String,
}

/// `BetaDeletedOrganizationWebhookEndpoint`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeletedWebhookEndpoint {
    pub id: String,
    #[serde(rename = "type")]
    pub tag: WebhookEndpointDeletedTag,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateWebhookEndpointRequest {
    /// At least one of [`EVENT_TYPES`].
    pub enabled_events: Vec<String>,
    pub url: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// Only what is sent changes; an empty `enabled_events` leaves the set unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateWebhookEndpointRequest {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub enabled_events: Option<Vec<String>>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub state: Option<WebhookEndpointState>,
    #[serde(default)]
    pub url: Option<String>,
}

/// A page of the `Page` style (`after_id`/`before_id`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IdPage<T> {
    pub data: Vec<T>,
    pub has_more: bool,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum WebhookDeliveryStatus {
    /// Waiting for its first attempt or a retry.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Every attempt failed (or the endpoint was disabled); it is not retried.
    Failed,
}

impl WebhookDeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookDeliveryStatus::Pending => "pending",
            WebhookDeliveryStatus::Delivered => "delivered",
            WebhookDeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(WebhookDeliveryStatus::Pending),
            "delivered" => Some(WebhookDeliveryStatus::Delivered),
            "failed" => Some(WebhookDeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// One event's delivery to one endpoint, as the delivery log shows it (an openma extension).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookDelivery {
    pub id: String,
    #[serde(rename = "type")]
    pub tag: WebhookDeliveryTag,
    pub endpoint_id: String,
    /// The event's id: the `webhook-id` header of every attempt.
    pub event_id: String,
    pub event_type: String,
    pub status: WebhookDeliveryStatus,
    /// Attempts made so far (at most 3).
    pub attempts: i64,
    /// The HTTP status of the last attempt, when the endpoint answered.
    pub last_response_status: Option<i64>,
    /// Why the last attempt failed, when it did.
    pub last_error: Option<String>,
    /// When the next attempt is due (pending deliveries only).
    pub next_attempt_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The body of a delivery (`BetaWebhookEvent`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    pub id: String,
    pub created_at: Timestamp,
    #[serde(rename = "type")]
    pub tag: WebhookEventTag,
    pub data: WebhookEventData,
}

/// `data` of a delivery: which object, of which tenant. Webhook data carries only ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEventData {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub organization_id: String,
    pub workspace_id: String,
    /// Per-type fields (e.g. `vault_id` of a `vault_credential.*` event).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}
