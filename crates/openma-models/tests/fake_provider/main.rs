//! The model adapters against `openma-fake-model`, which speaks the real Anthropic and
//! OpenAI wire formats over real HTTP. One test binary, to keep link time down.

mod clients;
mod control;
mod router;
mod support;
