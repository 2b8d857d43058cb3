//! The openma server: HTTP API, authentication, operations endpoints and the admin
//! commands of the `openma` binary. It wires the core to its adapters once, at start-up.
#![forbid(unsafe_code)]

pub mod adapters;
pub mod app;
pub mod backup;
pub mod blobs;
pub mod auth;
pub mod bench;
mod chat;
mod bench_cluster;
mod bench_files;
mod bench_mcp;
mod bench_metering;
mod bench_memory;
mod bench_runtime;
mod bench_sandbox;
pub mod cli;
pub mod cluster;
pub mod client;
pub mod config;
pub mod console;
pub mod environment_packages;
pub mod error;
pub mod extract;
pub mod http;
pub mod idempotency;
pub mod integrations;
pub mod mcp;
pub mod mcp_oauth;
pub mod openapi;
pub mod remote_sandbox;
pub mod runtime;
pub mod sandbox_seats;
pub mod scheduler;
pub mod secrets;
pub mod session_files;
pub mod session_memory;
pub mod session_network;
pub mod session_repos;
pub mod session_snapshots;

pub mod telemetry;
pub mod tools;
pub mod webhooks;
