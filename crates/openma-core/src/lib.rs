//! The openma domain: everything that decides, nothing that does I/O.
//!
//! The core talks to the world only through the traits in [`ports`]; adapters (SQL
//! stores, the HTTP server, later the Workers runtime) implement them. It builds for
//! `wasm32-unknown-unknown`, so nothing here may touch a clock, a socket or a thread.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod agents;
pub mod environments;
pub mod edge;
pub mod egress_policy;
pub mod error;
pub mod event_log;
pub mod files;
pub mod harness;
pub mod http_error;
pub mod integrations;
pub mod keys;
pub mod ledger;
pub mod memory;
pub mod mcp;
pub mod mcp_oauth;
pub mod memory_mounts;
pub mod metering;
pub mod model;
pub mod model_cards;
pub mod paging;
pub mod platform;
pub mod repositories;
pub mod retention;
pub mod secrets;
pub mod pricing;
pub mod quota;
pub mod ports;
pub mod sessions;
pub mod skills;
pub mod tenancy;
pub mod validate;
pub mod vaults;
pub mod web;
pub mod webhooks;

pub use error::{DomainError, StoreError};
pub use platform::Platform;
pub use ports::{AccountStore, AgentStore, Clock, EnvironmentStore, IdGen, KeyStore, MemoryStorage, Store, VaultStore, WebhookStore};
pub use tenancy::{ApiKey, Tenant, TenantId};
