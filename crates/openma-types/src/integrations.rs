//! openma extension: integrations publish an agent to a chat or a tracker, whose users
//! then talk to it there (a mention starts or resumes the session of that thread).

use serde::{Deserialize, Serialize};

use crate::common::Timestamp;
use crate::literal;

literal!(IntegrationTag = "integration");

/// Where the agent is published.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum IntegrationProvider {
    Slack,
    Github,
    Linear,
}

/// An integration. Its secrets (signing secret, bot token) are write-only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Integration {
    #[serde(rename = "type")]
    pub tag: IntegrationTag,
    pub id: String,
    pub provider: IntegrationProvider,
    pub name: Option<String>,
    /// The agent that answers (its latest version when a thread's session is created).
    pub agent_id: String,
    pub environment_id: Option<String>,
    /// The provider's API base URL the answers are posted to.
    pub api_base_url: String,
    /// Path of this server to enter as the provider app's event (request) URL.
    pub events_path: String,
    /// Path to enter as the app's interactivity URL (tool confirmation buttons).
    pub interactivity_path: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// `POST /v1/integrations`. Unknown keys are refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateIntegrationRequest {
    pub provider: IntegrationProvider,
    pub agent_id: String,
    #[serde(default)]
    pub environment_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// The app's signing secret (Slack: "Signing Secret"); verifies every delivery.
    pub signing_secret: String,
    /// The token answers are posted with (Slack: the bot's `xoxb-` token).
    pub bot_token: String,
    /// Defaults to the provider's public API (Slack: `https://slack.com/api`).
    #[serde(default)]
    pub api_base_url: Option<String>,
}
