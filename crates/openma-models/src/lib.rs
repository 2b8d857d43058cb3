//! Model provider adapters behind `openma_core::model::ModelClient`.
//!
//! - [`AnthropicClient`]: Anthropic Messages (`/v1/messages`), streaming SSE.
//! - [`OpenAiClient`]: OpenAI-compatible Chat Completions (`/v1/chat/completions`).
//! - [`ModelRouter`]: picks one of them by model id; [`ModelRouter::from_env`] reads the
//!   usual `*_API_KEY` / `*_BASE_URL` variables.
//!
//! Both adapters share the HTTP side (`http`), the SSE pipeline with its idle timeout
//! (`stream`) and a single error mapping (`errors`), so retries behave the same whatever
//! the provider. [`wire`] is that wire format alone, for a runtime that brings its own
//! HTTP (the Cloudflare Workers' `fetch`; build without the default `client` feature).
//! HTTPS needs the `tls` feature, and then [`install_tls_provider`] (or
//! [`http_client`], which calls it) before any `reqwest::Client` is built.

mod anthropic;
mod errors;
#[cfg(feature = "client")]
mod http;
mod openai;
#[cfg(feature = "client")]
mod router;
mod stream;
pub mod wire;

pub use anthropic::ANTHROPIC_VERSION;
#[cfg(feature = "client")]
pub use anthropic::AnthropicClient;
#[cfg(feature = "client")]
pub use http::{CONNECT_TIMEOUT, http_client, install_tls_provider};
#[cfg(feature = "client")]
pub use openai::OpenAiClient;
pub use wire::DEFAULT_IDLE_TIMEOUT;
#[cfg(feature = "client")]
pub use router::{
    ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, DEFAULT_ANTHROPIC_BASE_URL, DEFAULT_OPENAI_BASE_URL, ModelRouter,
    OPENAI_API_KEY, OPENAI_BASE_URL, Provider,
};
