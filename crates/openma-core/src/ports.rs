//! The ports: what the core needs from the world. Adapters implement these; the server
//! picks one of each at start-up.

use async_trait::async_trait;
use openma_types::Timestamp;
use openma_types::agents::Agent;
use openma_types::environments::Environment;
use openma_types::events::SessionEvent;
use openma_types::sessions::{Session, SessionStatus};
use openma_types::memory::{Memory, MemoryOperation, MemoryStore, MemoryVersion};
use openma_types::vaults::Vault;

use crate::files::StoredFile;
use crate::skills::{StoredSkill, StoredSkillVersion, VersionRemoval};
use crate::vaults::StoredCredential;

use crate::error::StoreError;
use crate::tenancy::{ApiKey, Tenant, TenantId, TenantLimits};

/// Wall-clock time. A port because `SystemTime::now` panics on wasm32 and tests want
/// to control it.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// Identifiers and secrets. Ids are `prefix_` + a time-ordered ULID.
pub trait IdGen: Send + Sync {
    fn new_id(&self, prefix: &str) -> String;
    /// A fresh API key secret (high-entropy, URL-safe).
    fn api_key_secret(&self) -> String;
    /// Fresh random bytes for an AES-GCM nonce.
    fn nonce(&self) -> [u8; 12];
}

/// Sort direction of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

impl Order {
    pub fn reverse(self) -> Self {
        match self {
            Order::Asc => Order::Desc,
            Order::Desc => Order::Asc,
        }
    }
}

/// A keyset position: lists are ordered by `(created_at, id)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub created_at: i64,
    pub id: String,
}

/// Bounds on `created_at`, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub gt: Option<i64>,
    pub gte: Option<i64>,
    pub lt: Option<i64>,
    pub lte: Option<i64>,
}

impl From<&openma_types::query::CreatedFilter> for TimeRange {
    fn from(f: &openma_types::query::CreatedFilter) -> Self {
        TimeRange {
            gt: f.created_at_gt.map(Timestamp::as_micros),
            gte: f.created_at_gte.map(Timestamp::as_micros),
            lt: f.created_at_lt.map(Timestamp::as_micros),
            lte: f.created_at_lte.map(Timestamp::as_micros),
        }
    }
}

impl From<openma_types::query::SortOrder> for Order {
    fn from(o: openma_types::query::SortOrder) -> Self {
        match o {
            openma_types::query::SortOrder::Asc => Order::Asc,
            openma_types::query::SortOrder::Desc => Order::Desc,
        }
    }
}

/// What a store needs to read one page: rows strictly after `after` in `order`,
/// at most `limit` of them.
#[derive(Clone, Debug)]
pub struct ListQuery {
    pub limit: u32,
    pub order: Order,
    pub after: Option<Position>,
    pub include_archived: bool,
    pub created: TimeRange,
}

/// Extra filters of the session list.
#[derive(Clone, Debug, Default)]
pub struct SessionFilter {
    pub agent_id: Option<String>,
    pub agent_version: Option<i64>,
    pub statuses: Vec<SessionStatus>,
}

/// An event as the log keeps it: its position, the client-visible event, and the
/// harness-only data that goes with it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub seq: i64,
    pub event: SessionEvent,
    pub internal: Option<serde_json::Value>,
}

/// Cluster mode: the lease a node holds on a session. An append carrying it commits only
/// while the lease still names this node and token, so a node that lost the session (it
/// paused, was partitioned, or handed it over) can no longer write to its log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub node_id: String,
    pub token: i64,
}

/// How an append ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    Done,
    /// The session row changed since it was read (nothing was written).
    Stale,
    /// The fence no longer holds: another node owns the session (nothing was written).
    Fenced,
}

/// The node that holds a session's lease, and where to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseHolder {
    pub node_id: String,
    /// The node's advertised base URL.
    pub url: String,
    /// When the lease lapses unless renewed (microseconds).
    pub expires_at: i64,
}

/// A client event waiting in a session's inbox (`event` is the client-visible event,
/// without `processed_at`).
#[derive(Clone, Debug, PartialEq)]
pub struct InboxEntry {
    pub event: SessionEvent,
    pub accepted_at: Timestamp,
}

/// What a request with an `Idempotency-Key` finds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// First time: process it, then record the result.
    New,
    /// Already done: replay this result.
    Replay { status: u16, body: String },
    /// The first request with this key is still being processed.
    InProgress,
    /// The key was used for a different request.
    Mismatch,
}

pub use openma_types::usage::UsageGroup;

#[derive(Clone, Debug, Default)]
pub struct UsageQuery {
    pub group_by: Vec<UsageGroup>,
    /// `created_at` bounds in microseconds: `from` inclusive, `to` exclusive.
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// One line of the usage report: the dimensions asked for, then the sums.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageRow {
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub model: Option<String>,
    pub kind: Option<String>,
    /// Days since the Unix epoch (UTC).
    pub day: Option<i64>,
    pub quantity: i64,
    pub amount_micros: i64,
}

/// A read of a session's event log.
#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    /// Only events strictly after (`Asc`) or before (`Desc`) this sequence number.
    pub after_seq: Option<i64>,
    pub descending: bool,
    pub limit: u32,
    /// Only these types (empty: all).
    pub types: Vec<String>,
    /// Bounds on `processed_at`, in microseconds.
    pub processed: TimeRange,
}

/// The archived part of a session's event log: the events with `seq <= last_seq` (there
/// are `events` of them), in one blob. Later events stay rows of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventLogArchive {
    pub blob_key: String,
    pub events: i64,
    pub last_seq: i64,
}

/// The outcome of a guarded delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    NotFound,
    /// The object exists but its state forbids deletion (in use, running).
    Refused,
}

/// The outcome of a write to a memory (with the version that records it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemoryWrite {
    Done,
    /// Another live memory of the store holds the path: its id.
    PathTaken(String),
    /// The store already holds its maximum of memories.
    StoreFull,
    /// The store is archived, or gone.
    StoreClosed,
    /// The memory changed (or went) since it was read.
    Stale,
}

/// Filters of the memory version list.
#[derive(Clone, Debug, Default)]
pub struct VersionFilter {
    pub memory_id: Option<String>,
    pub operation: Option<MemoryOperation>,
    pub api_key_id: Option<String>,
    pub session_id: Option<String>,
    pub service_account_id: Option<String>,
}

/// The tenant's webhook subscribers, told about stored changes (`agent.created`, …).
#[async_trait]
pub trait Announcer: Send + Sync {
    /// Queues the event, with `extra` fields in its `data`; a failure is logged, never
    /// returned: the change is already stored.
    async fn announce_with(&self, tenant: &TenantId, kind: &str, object_id: &str, extra: serde_json::Map<String, serde_json::Value>);

    async fn announce(&self, tenant: &TenantId, kind: &str, object_id: &str) {
        self.announce_with(tenant, kind, object_id, serde_json::Map::new()).await
    }

    /// Several events about one object at once (a status change and its stop reason); an
    /// adapter overrides it to read the subscriptions once for them all.
    async fn announce_all(&self, tenant: &TenantId, kinds: &[&str], object_id: &str) {
        for kind in kinds {
            self.announce(tenant, kind, object_id).await;
        }
    }
}

/// Webhook endpoints and their delivery queue (the outbox): a port of its own so a
/// deployment serves webhooks before it adapts the whole [`Store`] (the Workers do, on D1).
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Inserts an endpoint unless the tenant already holds `max` of them (`Ok(false)`).
    async fn insert_webhook_endpoint(&self, tenant: &TenantId, e: &crate::webhooks::StoredWebhookEndpoint, max: i64) -> Result<bool, StoreError>;
    async fn get_webhook_endpoint(&self, tenant: &TenantId, id: &str) -> Result<Option<crate::webhooks::StoredWebhookEndpoint>, StoreError>;
    /// Replaces the endpoint (body and sealed secret) if `updated_at` is still `expected`.
    async fn update_webhook_endpoint(&self, tenant: &TenantId, e: &crate::webhooks::StoredWebhookEndpoint, expected: Timestamp) -> Result<bool, StoreError>;
    /// Deletes the endpoint with its deliveries.
    async fn delete_webhook_endpoint(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError>;
    async fn list_webhook_endpoints(&self, tenant: &TenantId, query: &ListQuery) -> Result<Vec<crate::webhooks::StoredWebhookEndpoint>, StoreError>;
    /// Queues deliveries; one already queued for its (endpoint, event) is kept as it is.
    async fn enqueue_webhook_deliveries(&self, tenant: &TenantId, rows: &[crate::webhooks::QueuedDelivery]) -> Result<(), StoreError>;
    /// Pending deliveries due at `now`, oldest due first. Deliberately across tenants: this
    /// is the delivery worker's scan.
    async fn due_webhook_deliveries(&self, now: Timestamp, limit: u32) -> Result<Vec<(TenantId, crate::webhooks::QueuedDelivery)>, StoreError>;
    /// Claims a due delivery for one attempt: counts the attempt and moves its due time to
    /// `lease_until` (so no other scan takes it while it is in flight, and a crash mid-flight
    /// retries it then). False when someone else claimed it first.
    async fn claim_webhook_delivery(&self, tenant: &TenantId, id: &str, attempts_seen: i64, now: Timestamp, lease_until: Timestamp) -> Result<bool, StoreError>;
    async fn record_webhook_attempt(&self, tenant: &TenantId, id: &str, outcome: &crate::webhooks::AttemptOutcome) -> Result<(), StoreError>;
    /// An endpoint's deliveries in `(created_at, id)` order; `query.include_archived` is ignored.
    async fn list_webhook_deliveries(&self, tenant: &TenantId, endpoint_id: &str, query: &ListQuery) -> Result<Vec<crate::webhooks::QueuedDelivery>, StoreError>;
}

/// Skills and their versions: a port of its own so a deployment serves skills before it
/// adapts the whole [`Store`] (the Workers do, on D1).
#[async_trait]
pub trait SkillStore: Send + Sync {
    /// Inserts a skill with its first version; `Duplicate` when the tenant has a skill of
    /// the same name.
    async fn insert_skill(&self, tenant: &TenantId, skill: &StoredSkill, first: &StoredSkillVersion) -> Result<(), StoreError>;
    async fn get_skill(&self, tenant: &TenantId, id: &str) -> Result<Option<StoredSkill>, StoreError>;
    async fn find_skill_by_name(&self, tenant: &TenantId, name: &str) -> Result<Option<StoredSkill>, StoreError>;
    async fn list_skills(&self, tenant: &TenantId, query: &ListQuery) -> Result<Vec<StoredSkill>, StoreError>;
    /// Deletes a skill and its versions; returns their blob keys, or None when there is no
    /// such skill.
    async fn delete_skill(&self, tenant: &TenantId, id: &str) -> Result<Option<Vec<String>>, StoreError>;
    /// Adds a version and makes it the skill's latest (`updated_at` = its `created_at`);
    /// `Ok(false)` when the skill is gone.
    async fn insert_skill_version(&self, tenant: &TenantId, version: &StoredSkillVersion) -> Result<bool, StoreError>;
    async fn get_skill_version(&self, tenant: &TenantId, skill_id: &str, id: &str) -> Result<Option<StoredSkillVersion>, StoreError>;
    async fn list_skill_versions(&self, tenant: &TenantId, skill_id: &str, query: &ListQuery) -> Result<Vec<StoredSkillVersion>, StoreError>;
    /// Deletes a version unless it is the skill's only one; the skill's latest becomes the
    /// newest version left, and its `updated_at` becomes `now`.
    async fn delete_skill_version(&self, tenant: &TenantId, skill_id: &str, id: &str, now: Timestamp) -> Result<VersionRemoval, StoreError>;
}

/// Tenants and API keys: all that authentication and the operator's bootstrap key need.
/// A port of its own so a deployment can serve authentication before it adapts the whole
/// [`Store`] (the Workers do, on D1).
#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn insert_tenant(&self, tenant: &Tenant) -> Result<(), StoreError>;
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    async fn find_tenant(&self, id_or_name: &str) -> Result<Option<Tenant>, StoreError>;
    async fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError>;
    /// Looks a key up by hash, whichever tenant it belongs to: this is how a tenant is found.
    async fn find_api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError>;
    async fn touch_api_key(&self, tenant: &TenantId, id: &str, at: Timestamp) -> Result<(), StoreError>;
    async fn list_api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKey>, StoreError>;
    /// Revokes a key; false when no such unrevoked key exists.
    async fn revoke_api_key(&self, tenant: &TenantId, id: &str, at: Timestamp) -> Result<bool, StoreError>;
}

/// Console accounts and their signed-in sessions: a port of its own, like [`KeyStore`], so a
/// deployment serves the console before it adapts the whole [`Store`] (the Workers do, on D1).
#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn insert_user(&self, u: &crate::accounts::User) -> Result<(), StoreError>;
    /// A user by (normalised) e-mail.
    async fn find_user(&self, email: &str) -> Result<Option<crate::accounts::User>, StoreError>;
    async fn set_password(&self, user_id: &str, password_hash: &str, at: Timestamp) -> Result<(), StoreError>;
    /// Adds (or changes the role of) a membership.
    async fn put_membership(&self, user_id: &str, tenant: &TenantId, role: &str, at: Timestamp) -> Result<(), StoreError>;
    async fn memberships(&self, user_id: &str) -> Result<Vec<(TenantId, String)>, StoreError>;
    async fn insert_console_session(&self, token_hash: &str, user_id: &str, tenant: &TenantId, csrf: &str, at: Timestamp, expires: Timestamp) -> Result<(), StoreError>;
    /// The session of a token hash, with its user's e-mail and role in the session's tenant
    /// (none once the membership is gone).
    async fn console_session(&self, token_hash: &str) -> Result<Option<crate::accounts::ConsoleSession>, StoreError>;
    async fn delete_console_session(&self, token_hash: &str) -> Result<(), StoreError>;
    /// Moves a console session to another tenant (the caller checked the membership).
    async fn set_console_session_tenant(&self, token_hash: &str, tenant: &TenantId) -> Result<(), StoreError>;
    async fn delete_console_sessions_of(&self, user_id: &str) -> Result<(), StoreError>;
}

/// Agents and their version history: a port of its own so a deployment serves agents
/// before it adapts the whole [`Store`] (the Workers do, on D1).
#[async_trait]
pub trait AgentStore: Send + Sync {
    /// Inserts an agent and its first version.
    async fn insert_agent(&self, tenant: &TenantId, agent: &Agent) -> Result<(), StoreError>;
    async fn get_agent(&self, tenant: &TenantId, id: &str) -> Result<Option<Agent>, StoreError>;
    async fn get_agent_version(&self, tenant: &TenantId, id: &str, version: i64) -> Result<Option<Agent>, StoreError>;
    /// Replaces the agent if its stored version is still `expected_version`; records
    /// `agent.version` in the version history when it differs from the expected one.
    /// False when the guard failed (a concurrent update won).
    async fn update_agent(&self, tenant: &TenantId, agent: &Agent, expected_version: i64) -> Result<bool, StoreError>;
    async fn list_agents(&self, tenant: &TenantId, query: &ListQuery) -> Result<Vec<Agent>, StoreError>;
    /// Versions newest first, strictly below `below` when given.
    async fn list_agent_versions(
        &self,
        tenant: &TenantId,
        id: &str,
        below: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Agent>, StoreError>;
}

/// Environments: a port of its own, like [`AgentStore`], for deployments that serve them
/// before the whole [`Store`].
#[async_trait]
pub trait EnvironmentStore: Send + Sync {
    /// Inserts an environment. With `is_default`, fails with `Duplicate` when the tenant
    /// already has an unarchived default environment.
    async fn insert_environment(&self, tenant: &TenantId, env: &Environment, is_default: bool) -> Result<(), StoreError>;
    async fn get_environment(&self, tenant: &TenantId, id: &str) -> Result<Option<Environment>, StoreError>;
    async fn get_default_environment(&self, tenant: &TenantId) -> Result<Option<Environment>, StoreError>;
    /// Replaces the environment if `updated_at` is still `expected_updated_at`.
    async fn update_environment(&self, tenant: &TenantId, env: &Environment, expected_updated_at: Timestamp) -> Result<bool, StoreError>;
    /// Deletes unless a session that is not terminated still uses it.
    async fn delete_environment(&self, tenant: &TenantId, id: &str) -> Result<DeleteOutcome, StoreError>;
    async fn list_environments(&self, tenant: &TenantId, query: &ListQuery) -> Result<Vec<Environment>, StoreError>;
}

/// Vaults and their credentials (secrets sealed before they arrive): a port of its own,
/// like [`AgentStore`], for deployments that serve vaults before the whole [`Store`].
#[async_trait]
pub trait VaultStore: Send + Sync {
    async fn insert_vault(&self, tenant: &TenantId, vault: &Vault) -> Result<(), StoreError>;
    async fn get_vault(&self, tenant: &TenantId, id: &str) -> Result<Option<Vault>, StoreError>;
    /// Replaces the vault if `updated_at` is still `expected`. Archiving it also archives
    /// its credentials and purges their secrets, in the same transaction.
    async fn update_vault(&self, tenant: &TenantId, vault: &Vault, expected: Timestamp) -> Result<bool, StoreError>;
    /// Deletes the vault and its credentials.
    async fn delete_vault(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError>;
    async fn list_vaults(&self, tenant: &TenantId, query: &ListQuery) -> Result<Vec<Vault>, StoreError>;
    /// Inserts a credential unless the vault already holds `max_active` active ones
    /// (`Ok(false)`). `Duplicate` when its unique key is taken by an active credential.
    async fn insert_credential(&self, tenant: &TenantId, c: &StoredCredential, max_active: i64) -> Result<bool, StoreError>;
    async fn get_credential(&self, tenant: &TenantId, vault_id: &str, id: &str) -> Result<Option<StoredCredential>, StoreError>;
    /// Replaces the credential (body and secrets) if `updated_at` is still `expected`.
    async fn update_credential(&self, tenant: &TenantId, c: &StoredCredential, expected: Timestamp) -> Result<bool, StoreError>;
    async fn delete_credential(&self, tenant: &TenantId, vault_id: &str, id: &str) -> Result<bool, StoreError>;
    async fn list_credentials(&self, tenant: &TenantId, vault_id: &str, query: &ListQuery) -> Result<Vec<StoredCredential>, StoreError>;
}

/// Memory stores, their memories and the versions that record every write: a port of its
/// own, like [`AgentStore`], for deployments that serve memory before the whole [`Store`].
#[async_trait]
pub trait MemoryStorage: Send + Sync {
    async fn insert_memory_store(&self, tenant: &TenantId, store: &MemoryStore) -> Result<(), StoreError>;
    async fn get_memory_store(&self, tenant: &TenantId, id: &str) -> Result<Option<MemoryStore>, StoreError>;
    /// Replaces the store if `updated_at` is still `expected`.
    async fn update_memory_store(&self, tenant: &TenantId, store: &MemoryStore, expected: Timestamp) -> Result<bool, StoreError>;
    /// Deletes the store with its memories and versions.
    async fn delete_memory_store(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError>;
    async fn list_memory_stores(&self, tenant: &TenantId, query: &ListQuery) -> Result<Vec<MemoryStore>, StoreError>;
    /// Inserts a memory (its `content` set) and its `created` version, in one transaction
    /// that holds the store's row: an archived store, a taken path or a full store
    /// (`max` live memories) write nothing.
    async fn insert_memory(&self, tenant: &TenantId, memory: &Memory, version: &MemoryVersion, max: i64) -> Result<MemoryWrite, StoreError>;
    /// A memory with its content.
    async fn get_memory(&self, tenant: &TenantId, store_id: &str, id: &str) -> Result<Option<Memory>, StoreError>;
    /// Replaces a memory whose head is still `expected_version` and appends its version.
    async fn update_memory(&self, tenant: &TenantId, memory: &Memory, version: &MemoryVersion, expected_version: &str) -> Result<MemoryWrite, StoreError>;
    /// Deletes a memory whose head is still `expected_version` and appends its `deleted` version.
    async fn delete_memory(&self, tenant: &TenantId, version: &MemoryVersion, expected_version: &str) -> Result<MemoryWrite, StoreError>;
    /// Live memories whose path starts with `prefix`, in byte order of path, from `bound`.
    async fn list_memories(
        &self,
        tenant: &TenantId,
        store_id: &str,
        prefix: &str,
        bound: Option<&crate::memory::ListBound>,
        limit: u32,
        with_content: bool,
    ) -> Result<Vec<Memory>, StoreError>;
    /// A version with its content (unless deleted or redacted).
    async fn get_memory_version(&self, tenant: &TenantId, store_id: &str, id: &str) -> Result<Option<MemoryVersion>, StoreError>;
    /// Versions of a store in `(created_at, id)` order; `query.include_archived` is ignored.
    async fn list_memory_versions(
        &self,
        tenant: &TenantId,
        store_id: &str,
        filter: &VersionFilter,
        query: &ListQuery,
        with_content: bool,
    ) -> Result<Vec<MemoryVersion>, StoreError>;
    /// Stores a redacted version: its content, path and digest are erased for good.
    async fn redact_memory_version(&self, tenant: &TenantId, version: &MemoryVersion) -> Result<bool, StoreError>;
}

/// A tenant's model cards (BYOK), their keys sealed: a port of its own so the Workers serve
/// them on D1.
#[async_trait]
pub trait ModelCardStore: Send + Sync {
    /// Inserts a card unless the tenant already holds `max_active` unarchived ones
    /// (`Ok(false)`). `Duplicate` when it is a default and the tenant has an unarchived one.
    async fn insert_model_card(&self, tenant: &TenantId, card: &crate::model_cards::StoredModelCard, max_active: i64) -> Result<bool, StoreError>;
    async fn get_model_card(&self, tenant: &TenantId, id: &str) -> Result<Option<crate::model_cards::StoredModelCard>, StoreError>;
    /// Replaces the card (body and sealed key) if `updated_at` is still `expected`;
    /// `Duplicate` when it would make a second unarchived default.
    async fn update_model_card(&self, tenant: &TenantId, card: &crate::model_cards::StoredModelCard, expected: Timestamp) -> Result<bool, StoreError>;
    async fn delete_model_card(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError>;
    async fn list_model_cards(&self, tenant: &TenantId, query: &ListQuery) -> Result<Vec<crate::model_cards::StoredModelCard>, StoreError>;
    /// Every unarchived card of the tenant, oldest first (what resolution looks at).
    async fn active_model_cards(&self, tenant: &TenantId) -> Result<Vec<crate::model_cards::StoredModelCard>, StoreError>;
}

/// Session rows (not their event logs): a port of its own so a deployment serves session
/// CRUD before it adapts the whole [`Store`] (the Workers do, on D1).
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn insert_session(&self, tenant: &TenantId, session: &Session) -> Result<(), StoreError>;
    async fn get_session(&self, tenant: &TenantId, id: &str) -> Result<Option<Session>, StoreError>;
    /// Replaces the session if `updated_at` is still `expected_updated_at`.
    async fn update_session(&self, tenant: &TenantId, session: &Session, expected_updated_at: Timestamp) -> Result<bool, StoreError>;
    /// Deletes unless the session is running or rescheduling.
    async fn delete_session(&self, tenant: &TenantId, id: &str) -> Result<DeleteOutcome, StoreError>;
    async fn list_sessions(&self, tenant: &TenantId, query: &ListQuery, filter: &SessionFilter) -> Result<Vec<Session>, StoreError>;
    /// Sessions of the tenant whose status is running or rescheduling (the quota's count).
    async fn count_running_sessions(&self, tenant: &TenantId) -> Result<i64, StoreError>;
}

/// The billing ledger's rows and its report: a port of its own so that a deployment whose
/// sessions run elsewhere (the Workers' SessionDOs, writing to D1) can meter and report.
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// Appends ledger rows (periodic metering, or a step whose events are kept elsewhere);
    /// rows whose `(source, kind)` the tenant's ledger holds already are skipped. Returns
    /// how many were new.
    async fn insert_ledger(&self, tenant: &TenantId, rows: &[crate::ledger::LedgerEntry]) -> Result<u64, StoreError>;
    /// Sums the ledger by the requested dimensions.
    async fn usage_report(&self, tenant: &TenantId, query: &UsageQuery) -> Result<Vec<UsageRow>, StoreError>;
    /// Ledger rows after sequence number `after`, created before `settled_before`
    /// (microseconds), in sequence order.
    async fn ledger_after(
        &self,
        tenant: &TenantId,
        after: i64,
        settled_before: i64,
        limit: u32,
    ) -> Result<Vec<(i64, crate::ledger::LedgerEntry)>, StoreError>;
    /// The sequence number up to which the tenant acknowledged the usage export (0: none).
    async fn export_acknowledged(&self, tenant: &TenantId) -> Result<i64, StoreError>;
    /// Records an acknowledgement of the export up to `seq`.
    async fn set_export_acknowledged(&self, tenant: &TenantId, seq: i64) -> Result<(), StoreError>;
}

/// Integrations (Slack, GitHub, Linear), their threads' sessions and the deliveries seen: a
/// port of its own so that the Workers' integrations worker can serve them on D1.
#[async_trait]
pub trait IntegrationStore: Send + Sync {
    async fn insert_integration(&self, tenant: &TenantId, i: &crate::integrations::StoredIntegration) -> Result<(), StoreError>;
    async fn get_integration(&self, tenant: &TenantId, id: &str) -> Result<Option<crate::integrations::StoredIntegration>, StoreError>;
    /// An integration by id alone (deliveries name it in their URL), with its tenant.
    async fn find_integration(&self, id: &str) -> Result<Option<(TenantId, crate::integrations::StoredIntegration)>, StoreError>;
    async fn list_integrations(&self, tenant: &TenantId, query: &ListQuery) -> Result<Vec<crate::integrations::StoredIntegration>, StoreError>;
    /// Replaces an integration's sealed secrets (rotation of the root secret).
    async fn reseal_integration(&self, tenant: &TenantId, i: &crate::integrations::StoredIntegration) -> Result<bool, StoreError>;
    /// Deletes the integration with its thread bindings and delivery record.
    async fn delete_integration(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError>;
    /// Binds a thread to `session_id` unless it is bound already; the session it is bound to.
    async fn bind_integration_thread(&self, tenant: &TenantId, integration_id: &str, thread: &str, session_id: &str, at: Timestamp) -> Result<String, StoreError>;
    async fn integration_thread_session(&self, integration_id: &str, thread: &str) -> Result<Option<String>, StoreError>;
    /// The integration and thread a session answers in, if any.
    async fn session_integration_thread(&self, session_id: &str) -> Result<Option<(String, String)>, StoreError>;
    /// Records a delivery id; false when it was recorded before.
    async fn record_integration_delivery(&self, integration_id: &str, delivery_id: &str, at: Timestamp) -> Result<bool, StoreError>;
}

/// The file rows (uploads, session mount copies, outputs): a port of its own so that a
/// deployment with only a files table (the Workers' D1) can serve the Files API.
#[async_trait]
pub trait FileStore: Send + Sync {
    async fn insert_file(&self, tenant: &TenantId, file: &StoredFile) -> Result<(), StoreError>;
    /// Inserts a file into a session's scope unless the session already holds `max` files
    /// of that origin (`Ok(false)`).
    async fn insert_scoped_file(&self, tenant: &TenantId, file: &StoredFile, max: i64) -> Result<bool, StoreError>;
    async fn get_file(&self, tenant: &TenantId, id: &str) -> Result<Option<StoredFile>, StoreError>;
    /// Files newest first; `scope` restricts them to one session's files, otherwise only
    /// files without a scope are listed.
    async fn list_files(&self, tenant: &TenantId, query: &ListQuery, scope: Option<&str>) -> Result<Vec<StoredFile>, StoreError>;
    async fn get_files(&self, tenant: &TenantId, ids: &[String]) -> Result<Vec<StoredFile>, StoreError>;
    /// Deletes the file; returns its blob key when no other file still refers to the blob
    /// (the caller then deletes the blob), `None` inside when it is still shared.
    async fn delete_file(&self, tenant: &TenantId, id: &str) -> Result<Option<Option<String>>, StoreError>;
    /// Deletes every file of a session's scope; returns the blob keys no file refers to any more.
    async fn delete_scoped_files(&self, tenant: &TenantId, session_id: &str) -> Result<Vec<String>, StoreError>;
    /// Files whose `expires_at` is before `now` and whose bytes are still kept (all tenants).
    async fn expired_files(&self, now: Timestamp, limit: u32) -> Result<Vec<(TenantId, StoredFile)>, StoreError>;
    /// The files whose bytes the tenant stores, created before `before`: uploads and
    /// outputs, not mount copies (they share their original's bytes) nor purged files.
    async fn stored_files(&self, tenant: &TenantId, before: Timestamp) -> Result<Vec<StoredFile>, StoreError>;
    /// Marks an expired file's bytes as gone; returns the blob key when no live file shares it.
    async fn purge_file_blob(&self, tenant: &TenantId, id: &str) -> Result<Option<String>, StoreError>;
}

/// Persistent state. Every method but the tenant and key-lookup ones is scoped by a
/// [`TenantId`]; an object of another tenant is indistinguishable from a missing one.
#[async_trait]
pub trait Store:
    KeyStore + AccountStore + AgentStore + EnvironmentStore + VaultStore + MemoryStorage + SessionStore + ModelCardStore + FileStore + LedgerStore + IntegrationStore + WebhookStore + SkillStore + Send + Sync
{
    /// A short name of the backend for `/health` (e.g. `sqlite 3.46.0`).
    async fn describe(&self) -> Result<String, StoreError>;


    // -- session event log --
    /// Appends events and, in the same transaction, replaces the session row when given
    /// (guarded by its `updated_at`; `Stale`, writing nothing, if the guard failed).
    /// Also removes the inbox entries named in `consumed` and records `ledger` rows, in
    /// the same transaction (a ledger row already recorded for its source is kept). With a
    /// `fence` (cluster mode) nothing is written unless the lease still holds (`Fenced`),
    /// and the commit notifies the other nodes of the new events.
    #[allow(clippy::too_many_arguments)]
    async fn append_events(
        &self,
        tenant: &TenantId,
        session_id: &str,
        events: &[StoredEvent],
        session: Option<(&Session, Timestamp)>,
        consumed: &[String],
        ledger: &[crate::ledger::LedgerEntry],
        fence: Option<&Fence>,
    ) -> Result<Appended, StoreError>;

    // -- cluster mode: nodes and session leases --
    /// Records a node (or its heartbeat) and renews the leases it holds on `sessions`
    /// until `until` (microseconds).
    async fn node_heartbeat(&self, node_id: &str, url: &str, now: i64, until: i64, sessions: &[String]) -> Result<(), StoreError>;
    /// Takes the lease of a session that no node holds, whose lease lapsed, or that this
    /// node held; the token grows with every taking. `None`: another node holds it.
    async fn acquire_lease(&self, session_id: &str, node_id: &str, now: i64, until: i64) -> Result<Option<i64>, StoreError>;
    /// Gives a lease up (and bumps its token so the giver can no longer write).
    async fn release_lease(&self, session_id: &str, fence: &Fence) -> Result<(), StoreError>;
    /// Gives up every lease of a node and forgets the node (graceful shutdown). Returns how
    /// many leases were handed over.
    async fn release_node(&self, node_id: &str) -> Result<u64, StoreError>;
    /// Who holds a session's lease (a lapsed lease too), if anyone.
    async fn lease_holder(&self, session_id: &str) -> Result<Option<LeaseHolder>, StoreError>;
    /// Running sessions whose lease is missing or lapsed at `now`: another node must take
    /// them over. Deliberately across tenants.
    async fn orphaned_sessions(&self, now: i64) -> Result<Vec<(TenantId, String)>, StoreError>;
    /// Keeps a client event accepted while the session runs, until it is applied.
    async fn push_inbox(&self, tenant: &TenantId, session_id: &str, entry: &InboxEntry) -> Result<(), StoreError>;
    /// The waiting client events of a session, in acceptance order.
    async fn list_inbox(&self, tenant: &TenantId, session_id: &str) -> Result<Vec<InboxEntry>, StoreError>;
    /// Sessions whose last known status is running or rescheduling: after a restart they
    /// are resumed. Deliberately across tenants: this is the recovery scan.
    async fn sessions_to_resume(&self) -> Result<Vec<(TenantId, String)>, StoreError>;
    /// The tenant of a session, by its id alone. Only for the server's own plumbing that is
    /// keyed by session (the sandbox's egress proxy); never for answering a caller.
    async fn session_tenant(&self, session_id: &str) -> Result<Option<TenantId>, StoreError>;
    async fn list_events(&self, tenant: &TenantId, session_id: &str, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError>;
    /// The sequence number of an event, by id.
    async fn event_seq(&self, tenant: &TenantId, session_id: &str, event_id: &str) -> Result<Option<i64>, StoreError>;
    /// The highest sequence number of a session's log (0 when empty).
    async fn last_event_seq(&self, tenant: &TenantId, session_id: &str) -> Result<i64, StoreError>;

    // -- archived event logs --
    /// Where the archived part of a session's log is, if any of it is archived.
    async fn event_log_archive(&self, tenant: &TenantId, session_id: &str) -> Result<Option<EventLogArchive>, StoreError>;
    /// Sessions whose log may have events to archive: archived ones, and those last changed
    /// before `idle_before` when given; never running or rescheduling ones, nor those
    /// unchanged since their last archival. Deliberately across tenants: this is the archival
    /// scan. With each, the `updated_at` it had.
    async fn sessions_to_archive(&self, idle_before: Option<Timestamp>, limit: u32) -> Result<Vec<(TenantId, String, Timestamp)>, StoreError>;
    /// In one transaction: records `archive` on the session (whose blob the caller has
    /// written) and deletes the events it holds, unless the session is running,
    /// rescheduling or has inbox entries (`Ok(false)`, nothing written). With `archive`
    /// `None` only notes that the session was looked at as of `seen` (its `updated_at`).
    async fn archive_event_log(
        &self,
        tenant: &TenantId,
        session_id: &str,
        archive: Option<&EventLogArchive>,
        seen: Timestamp,
    ) -> Result<bool, StoreError>;

    // -- the cluster's scheduler --
    /// Claims a run of the job `name` for `node` when it is due at `now` and no other
    /// node holds it: its next run moves to `next_run_at` and the claim lasts until
    /// `locked_until`. A job never seen before is due at once. True when this node won.
    async fn claim_scheduled_job(
        &self,
        name: &str,
        node: &str,
        now: Timestamp,
        next_run_at: Timestamp,
        locked_until: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Releases a claimed job, recording when it ran and its error (if any).
    async fn finish_scheduled_job(&self, name: &str, node: &str, now: Timestamp, error: Option<&str>) -> Result<(), StoreError>;

    // -- retention (all tenants) --
    /// Deletes up to `limit` memory versions created before `before`, never the newest
    /// version of a memory. Returns how many went.
    async fn purge_memory_versions(&self, before: Timestamp, limit: u32) -> Result<u64, StoreError>;
    /// Deletes up to `limit` finished (delivered or failed) webhook deliveries last
    /// changed before `before`. Returns how many went.
    async fn purge_webhook_deliveries(&self, before: Timestamp, limit: u32) -> Result<u64, StoreError>;

    // -- platform facts --
    async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Sets a fact; with `only_if_absent`, keeps an existing value and returns false.
    async fn put_meta(&self, key: &str, value: &str, only_if_absent: bool) -> Result<bool, StoreError>;


    // -- quotas --
    async fn get_tenant_limits(&self, tenant: &TenantId) -> Result<TenantLimits, StoreError>;
    async fn set_tenant_limits(&self, tenant: &TenantId, limits: &TenantLimits) -> Result<(), StoreError>;

    // -- idempotency --
    /// Claims a key for a request (by hash); keys older than `expired_before` are forgotten.
    async fn claim_idempotency(&self, tenant: &TenantId, key: &str, request_hash: &str, now: Timestamp, expired_before: Timestamp) -> Result<IdempotencyClaim, StoreError>;
    /// Records the result of a claimed key.
    async fn complete_idempotency(&self, tenant: &TenantId, key: &str, status: u16, body: &str) -> Result<(), StoreError>;
    /// Forgets a claim whose request failed on the server's side, so a retry runs again.
    async fn release_idempotency(&self, tenant: &TenantId, key: &str) -> Result<(), StoreError>;
}

/// A failure of the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The body grew past the limit the caller set; nothing was stored.
    #[error("the body is larger than {0} bytes")]
    TooLarge(u64),
    /// The body's source failed while it was read (e.g. the client went away).
    #[error("the upload was interrupted: {0}")]
    Source(String),
    #[error("blob store failure: {0}")]
    Backend(String),
}

/// A body in chunks, so that large files never sit in memory whole.
pub type ByteStream = futures::stream::BoxStream<'static, Result<Vec<u8>, BlobError>>;

/// What a stored blob holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    pub size: u64,
    /// Lower-case hex SHA-256 of the bytes.
    pub sha256: String,
}

/// What every blob store adapter counts while an upload streams through: its size, held
/// to `max_bytes`, and its SHA-256.
pub struct BlobMeter {
    size: u64,
    max_bytes: u64,
    hash: sha2::Sha256,
}

impl BlobMeter {
    pub fn new(max_bytes: u64) -> Self {
        BlobMeter { size: 0, max_bytes, hash: <sha2::Sha256 as sha2::Digest>::new() }
    }

    /// Counts one chunk; [`BlobError::TooLarge`] once the bytes pass `max_bytes`.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.size += chunk.len() as u64;
        if self.size > self.max_bytes {
            return Err(BlobError::TooLarge(self.max_bytes));
        }
        sha2::Digest::update(&mut self.hash, chunk);
        Ok(())
    }

    /// The size, and the raw SHA-256 digest (which some stores check on write).
    pub fn finish(self) -> (BlobInfo, Vec<u8>) {
        let digest = sha2::Digest::finalize(self.hash).to_vec();
        let sha256 = digest.iter().map(|b| format!("{b:02x}")).collect();
        (BlobInfo { size: self.size, sha256 }, digest)
    }
}

/// Bytes by key (file contents, session outputs). Keys are chosen by the core and are
/// plain `[a-z0-9_/-]` paths.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores `body` under `key` atomically (a reader sees the old object or the whole new
    /// one), refusing it with [`BlobError::TooLarge`] past `max_bytes`.
    async fn put(&self, key: &str, body: ByteStream, max_bytes: u64) -> Result<BlobInfo, BlobError>;
    /// The object's bytes, or None when there is no such object.
    async fn get(&self, key: &str) -> Result<Option<ByteStream>, BlobError>;
    /// Removes the object; a missing one is not an error.
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
}
