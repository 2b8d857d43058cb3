//! Built-in tools that run in the server rather than in a session's sandbox.

pub mod web;
