//! The agent loop's decisions, independent of any runtime: what the model sees
//! (projection), which tools it may call and under which permission, which client input
//! is valid, and how long to back off after a transient failure. The session actor in
//! the server drives these with real I/O.

pub mod compaction;
pub mod file_blocks;
pub mod input;
pub mod projection;
pub mod retry;
pub mod step;
pub mod tools;
pub mod url_sources;
