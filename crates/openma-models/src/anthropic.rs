//! Anthropic Messages API adapter (`POST /v1/messages`, streaming).

pub(crate) mod decode;
pub(crate) mod request;
#[cfg(feature = "client")]
mod client;

#[cfg(feature = "client")]
pub use client::AnthropicClient;

/// The API version this adapter speaks; its SSE events are the ones `decode` knows.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
