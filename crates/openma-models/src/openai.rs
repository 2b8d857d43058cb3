//! OpenAI-compatible Chat Completions adapter (`POST /v1/chat/completions`, streaming).
//! Works against OpenAI itself and the many servers that copy its wire format.

pub(crate) mod decode;
pub(crate) mod request;
#[cfg(feature = "client")]
mod client;

#[cfg(feature = "client")]
pub use client::OpenAiClient;
