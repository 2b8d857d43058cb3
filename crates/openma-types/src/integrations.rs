//! openma extension: integrations publish an agent to Slack, GitHub or Linear, whose users
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
    /// Path of this server to enter as the provider app's webhook (event request) URL.
    pub events_path: String,
    /// Slack: path to enter as the app's interactivity URL (tool confirmation buttons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interactivity_path: Option<String>,
    /// GitHub: the App's id (the issuer of its JWTs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// GitHub: the App's slug; `@slug` in an issue, a pull request or a comment engages it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_slug: Option<String>,
    /// GitHub: a label that engages the agent on the issue or pull request it is put on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_label: Option<String>,
    /// GitHub: whether a new session gets the repository cloned (with a short-lived
    /// installation token) into `/workspace/<repo>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_repository: Option<bool>,
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
    /// Verifies every delivery (Slack: the app's "Signing Secret"; GitHub: the App's
    /// webhook secret; Linear: the webhook's signing secret).
    pub signing_secret: String,
    /// Slack: the bot's `xoxb-` token; Linear: the API key or OAuth token of the agent's
    /// app user. Answers are posted with it.
    #[serde(default)]
    pub bot_token: Option<String>,
    /// GitHub: the App's id.
    #[serde(default)]
    pub app_id: Option<String>,
    /// GitHub: the App's slug (what `@mentions` name).
    #[serde(default)]
    pub app_slug: Option<String>,
    /// GitHub: the App's private key (PEM, PKCS#1 or PKCS#8); signs the JWTs that mint
    /// installation tokens.
    #[serde(default)]
    pub private_key: Option<String>,
    /// GitHub: a label that engages the agent.
    #[serde(default)]
    pub trigger_label: Option<String>,
    /// GitHub: clone the repository into new sessions (default true).
    #[serde(default)]
    pub clone_repository: Option<bool>,
    /// Defaults to the provider's public API (`https://slack.com/api`,
    /// `https://api.github.com`, `https://api.linear.app`).
    #[serde(default)]
    pub api_base_url: Option<String>,
}
