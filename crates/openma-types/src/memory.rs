//! Memory stores, the memories in them, and the versions every change to a memory leaves
//! behind (beta `agent-memory-2026-07-22`).

use serde::{Deserialize, Serialize};

use crate::common::{Metadata, MetadataPatch, Timestamp, double_option};
use crate::literal;

literal!(MemoryStoreTag = "memory_store");
literal!(MemoryTag = "memory");
literal!(MemoryPrefixTag = "memory_prefix");
literal!(MemoryVersionTag = "memory_version");

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemoryStore {
    pub id: String,
    #[serde(rename = "type")]
    pub tag: MemoryStoreTag,
    pub name: String,
    /// `""` when unset.
    pub description: String,
    pub metadata: Metadata,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub archived_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateMemoryStoreRequest {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateMemoryStoreRequest {
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<std::collections::BTreeMap<String, Option<String>>>))]
    pub metadata: Option<Option<MetadataPatch>>,
}

/// A text document at a path in a store. `content` is `null` under `view=basic`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Memory {
    pub id: String,
    #[serde(rename = "type")]
    pub tag: MemoryTag,
    pub memory_store_id: String,
    pub path: String,
    pub content: Option<String>,
    pub content_sha256: String,
    pub content_size_bytes: i64,
    /// The version that holds the current content.
    pub memory_version_id: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A directory roll-up in a memory list (`depth=1`): stands for the memories below `path`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemoryPrefix {
    #[serde(rename = "type")]
    pub tag: MemoryPrefixTag,
    /// Ends with `/`.
    pub path: String,
}

/// An item of a memory list: a memory or a roll-up of memories (by `type`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum MemoryListItem {
    Memory(Memory),
    Prefix(MemoryPrefix),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateMemoryRequest {
    pub path: String,
    /// Required; `""` makes an empty memory.
    #[serde(default)]
    pub content: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PreconditionKind {
    ContentSha256,
}

/// What the stored memory must look like for an update to apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Precondition {
    #[serde(rename = "type")]
    pub kind: PreconditionKind,
    #[serde(default)]
    pub content_sha256: Option<String>,
}

/// An update: new content, a new path (a rename), or both. `null` keeps the field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateMemoryRequest {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub precondition: Option<Precondition>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MemoryOperation {
    Created,
    Modified,
    Deleted,
}

impl MemoryOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            MemoryOperation::Created => "created",
            MemoryOperation::Modified => "modified",
            MemoryOperation::Deleted => "deleted",
        }
    }
}

/// Who wrote or redacted a memory version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Actor {
    /// An agent writing through a session's mounted store.
    SessionActor { session_id: String },
    /// A direct API caller, by the key it authenticated with.
    ApiActor { api_key_id: String },
    UserActor { user_id: String },
    ServiceAccountActor { service_account_id: String },
}

/// One change to a memory. Only redaction changes a version after it is written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemoryVersion {
    pub id: String,
    #[serde(rename = "type")]
    pub tag: MemoryVersionTag,
    pub memory_store_id: String,
    pub memory_id: String,
    pub operation: MemoryOperation,
    /// The memory's path at this write; `null` once redacted.
    pub path: Option<String>,
    /// `null` under `view=basic`, for `deleted`, and once redacted.
    pub content: Option<String>,
    pub content_sha256: Option<String>,
    pub content_size_bytes: Option<i64>,
    pub created_by: Option<Actor>,
    pub created_at: Timestamp,
    pub redacted_at: Option<Timestamp>,
    pub redacted_by: Option<Actor>,
}

/// How a session may use a mounted memory store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MemoryAccess {
    #[default]
    ReadWrite,
    ReadOnly,
}

/// `MemoryStoreResourceParam` of a session create body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemoryStoreResourceParams {
    #[serde(rename = "type")]
    pub tag: MemoryStoreTag,
    pub memory_store_id: String,
    #[serde(default)]
    pub access: Option<MemoryAccess>,
    #[serde(default)]
    pub instructions: Option<String>,
}

/// `MemoryStoreResource`: a store mounted into a session at `/mnt/memory/<slug>/`, with
/// its name and description as they were when it was attached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemoryStoreResource {
    #[serde(rename = "type")]
    pub tag: MemoryStoreTag,
    pub memory_store_id: String,
    pub access: MemoryAccess,
    pub name: String,
    pub description: String,
    pub instructions: Option<String>,
    pub mount_path: String,
}
