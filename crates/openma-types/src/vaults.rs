//! Vaults and their credentials. Secret fields are write-only: they exist only in request
//! types, as [`WriteOnly`], which never prints and never serialises.

use serde::{Deserialize, Serialize};

use crate::common::{Metadata, MetadataPatch, Timestamp, double_option};
use crate::literal;

literal!(VaultTag = "vault");
literal!(CredentialTag = "vault_credential");

/// A secret as a client sends it: kept out of `Debug` output and never serialised.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String, format = Password))]
#[serde(transparent)]
pub struct WriteOnly(pub String);

impl std::fmt::Debug for WriteOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[write-only]")
    }
}

impl Serialize for WriteOnly {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[write-only]")
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Vault {
    pub id: String,
    #[serde(rename = "type")]
    pub tag: VaultTag,
    pub display_name: String,
    pub metadata: Metadata,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub archived_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateVaultRequest {
    pub display_name: String,
    #[serde(default)]
    pub metadata: Option<Metadata>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateVaultRequest {
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub display_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<std::collections::BTreeMap<String, Option<String>>>))]
    pub metadata: Option<Option<MetadataPatch>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CredentialNetworking {
    Unrestricted,
    Limited { allowed_hosts: Vec<String> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InjectionLocation {
    pub header: bool,
    pub body: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InjectionLocationParams {
    #[serde(default)]
    pub header: Option<bool>,
    #[serde(default)]
    pub body: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthKind {
    None,
    ClientSecretBasic,
    ClientSecretPost,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenEndpointAuth {
    #[serde(rename = "type")]
    pub kind: TokenEndpointAuthKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OAuthRefresh {
    pub client_id: String,
    pub token_endpoint: String,
    pub token_endpoint_auth: TokenEndpointAuth,
    pub resource: Option<String>,
    pub scope: Option<String>,
}

/// A credential's `auth` as responses show it: no secret in it, ever.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CredentialAuth {
    McpOauth { mcp_server_url: String, expires_at: Option<Timestamp>, refresh: Option<OAuthRefresh> },
    StaticBearer { mcp_server_url: String },
    EnvironmentVariable { secret_name: String, networking: CredentialNetworking, injection_location: InjectionLocation },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Credential {
    pub id: String,
    #[serde(rename = "type")]
    pub tag: CredentialTag,
    pub vault_id: String,
    pub display_name: Option<String>,
    pub auth: CredentialAuth,
    pub metadata: Metadata,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub archived_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TokenEndpointAuthParams {
    None,
    ClientSecretBasic { client_secret: WriteOnly },
    ClientSecretPost { client_secret: WriteOnly },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OAuthRefreshParams {
    pub client_id: String,
    pub refresh_token: WriteOnly,
    pub token_endpoint: String,
    pub token_endpoint_auth: TokenEndpointAuthParams,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

/// `auth` on credential create.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CredentialAuthParams {
    McpOauth {
        mcp_server_url: String,
        access_token: WriteOnly,
        #[serde(default)]
        expires_at: Option<Timestamp>,
        #[serde(default)]
        refresh: Option<OAuthRefreshParams>,
    },
    StaticBearer { mcp_server_url: String, token: WriteOnly },
    EnvironmentVariable {
        secret_name: String,
        secret_value: WriteOnly,
        networking: CredentialNetworking,
        #[serde(default)]
        injection_location: Option<InjectionLocationParams>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateCredentialRequest {
    pub auth: CredentialAuthParams,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OAuthRefreshUpdateParams {
    #[serde(default)]
    pub refresh_token: Option<WriteOnly>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub scope: Option<Option<String>>,
    #[serde(default)]
    pub token_endpoint_auth: Option<TokenEndpointAuthParams>,
}

/// `auth` on credential update: the same `type`, only what changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CredentialAuthUpdate {
    McpOauth {
        #[serde(default)]
        access_token: Option<WriteOnly>,
        #[serde(default)]
        expires_at: Option<Timestamp>,
        #[serde(default)]
        refresh: Option<OAuthRefreshUpdateParams>,
    },
    StaticBearer {
        #[serde(default)]
        token: Option<WriteOnly>,
    },
    EnvironmentVariable {
        #[serde(default)]
        secret_value: Option<WriteOnly>,
        #[serde(default)]
        networking: Option<CredentialNetworking>,
        #[serde(default)]
        injection_location: Option<InjectionLocationParams>,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateCredentialRequest {
    #[serde(default)]
    pub auth: Option<CredentialAuthUpdate>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub display_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<std::collections::BTreeMap<String, Option<String>>>))]
    pub metadata: Option<Option<MetadataPatch>>,
}

literal!(CredentialValidationTag = "vault_credential_validation");

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ValidationStatus {
    Valid,
    Invalid,
    Unknown,
}

/// An HTTP response captured during validation (body scrubbed of secrets, truncated).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CapturedResponse {
    pub status_code: u16,
    pub content_type: String,
    pub body: String,
    pub body_truncated: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct McpProbe {
    pub method: String,
    pub http_response: Option<CapturedResponse>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RefreshStatus {
    Succeeded,
    Failed,
    ConnectError,
    NoRefreshToken,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefreshOutcome {
    pub status: RefreshStatus,
    pub http_response: Option<CapturedResponse>,
}

/// `CredentialValidation`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CredentialValidation {
    #[serde(rename = "type")]
    pub tag: CredentialValidationTag,
    pub credential_id: String,
    pub vault_id: String,
    pub status: ValidationStatus,
    pub has_refresh_token: bool,
    pub mcp_probe: Option<McpProbe>,
    pub refresh: Option<RefreshOutcome>,
    pub validated_at: Timestamp,
}
