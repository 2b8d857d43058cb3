//! Files (`/v1/files`) and the file resources of sessions.

use serde::{Deserialize, Serialize};

use crate::common::Timestamp;
use crate::literal;

literal!(FileTag = "file");
literal!(FileDeletedTag = "file_deleted");
literal!(SessionScopeTag = "session");
literal!(SessionResourceDeletedTag = "session_resource_deleted");

/// `BetaFileMetadata` response object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileMetadata {
    pub id: String,
    #[serde(rename = "type")]
    pub tag: FileTag,
    pub filename: String,
    pub mime_type: String,
    pub size_bytes: u64,
    pub created_at: Timestamp,
    pub downloadable: bool,
    pub expires_at: Option<Timestamp>,
    pub scope: Option<FileScope>,
}

/// The context a file belongs to: the session that produced or mounted it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileScope {
    pub id: String,
    #[serde(rename = "type")]
    pub tag: SessionScopeTag,
}

/// `BetaDeletedFile` response object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeletedFile {
    pub id: String,
    #[serde(rename = "type")]
    pub tag: FileDeletedTag,
}

/// `FileResource`: a file mounted read-only into a session's sandbox. `file_id` names the
/// session-scoped copy made when it was mounted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileResource {
    pub id: String,
    #[serde(rename = "type")]
    pub tag: FileTag,
    pub file_id: String,
    pub mount_path: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// `FileResourceParams`: `{type: "file", file_id, mount_path?}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileResourceParams {
    #[serde(rename = "type")]
    pub tag: FileTag,
    pub file_id: String,
    #[serde(default)]
    pub mount_path: Option<String>,
}

/// `DeleteSessionResource` response object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeletedSessionResource {
    pub id: String,
    #[serde(rename = "type")]
    pub tag: SessionResourceDeletedTag,
}

/// Body of `POST /v1/sessions/{id}/resources/{rid}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateSessionResourceRequest {
    pub authorization_token: String,
}
