//! Wire types of the Managed Agents API (beta `managed-agents-2026-04-01`).
//!
//! Response objects serialise exactly as the official SDKs expect; request objects
//! tolerate unknown keys (the SDKs and the seed's curl examples send extras) but reject
//! unknown enum values, so unsupported configuration is never silently ignored.
#![forbid(unsafe_code)]

pub mod agents;
pub mod common;
pub mod environments;
pub mod events;
pub mod files;
pub mod integrations;
pub mod memory;
pub mod model_cards;
pub mod query;
/// The sandbox server's protocol (not part of the public API): shared by its clients, the
/// native server and the Workers' SessionDO.
pub mod sandbox;
pub mod sessions;
pub mod skills;
pub mod usage;
pub mod vaults;
pub mod webhooks;

pub use common::*;
