//! A scripted fake model provider for tests: "fake only the outside world".
//!
//! [`FakeModel`] is an HTTP server speaking the real wire formats: Anthropic
//! `POST /v1/messages` (SSE framed exactly as Anthropic frames it, or JSON when `stream`
//! is false) and OpenAI `POST /v1/chat/completions` (`data:` chunks and `data: [DONE]`).
//! Both endpoints take their answers from one FIFO script of [`Reply`]s; when the script
//! is empty they answer the default reply (the text `ok`, changeable).
//!
//! Control API, for tests in any language:
//! - `POST /_fake/script`: a reply or a list of replies (JSON, see [`Reply`]), appended;
//! - `POST /_fake/reset`: empty the script and the captured requests, restore the default;
//! - `GET /_fake/requests`: every [`CapturedRequest`] (credentials only as SHA-256);
//! - `GET|PUT /_fake/default`: the reply used when the script is empty;
//! - `GET /_fake/health`: `{"status":"ok","queued":…,"requests":…,"default_reply":…}`.

/// A stdio MCP server program (Python, run as `python3 -u -c <this>`), the outside world's
/// kind of program an environment's `config.mcp_servers` starts: `note` writes its `text` (and
/// `$GREETING`, when set) to `/workspace/from-mcp.txt` and answers `noted by uid <uid>`; `echo`
/// answers `pong`. The Python suites read the same file.
pub const STDIO_MCP_SERVER: &str = include_str!("stdio_mcp_server.py");

mod anthropic;
mod frames;
mod openai;
mod script;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use script::{
    Block, CutReply, DEFAULT_SIGNATURE, ErrorReply, MessageReply, Reply, ScriptUsage, StreamErrorReply,
    anthropic_error_type,
};
pub use server::{CapturedRequest, sha256_hex};

/// A running fake provider. Dropping it stops accepting connections.
#[derive(Debug)]
pub struct FakeModel {
    addr: SocketAddr,
    shared: Arc<server::Shared>,
    task: JoinHandle<()>,
}

impl FakeModel {
    /// Serve on a free loopback port, on the current tokio runtime.
    pub async fn start() -> FakeModel {
        Self::bind("127.0.0.1:0".parse().expect("loopback address"))
            .await
            .expect("the fake model binds a loopback port")
    }

    /// Serve on `addr` (port 0 for any free port).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<FakeModel> {
        Self::bind_with_default(addr, Reply::default_reply()).await
    }

    /// Serve on `addr`, answering `default_reply` whenever the script is empty.
    pub async fn bind_with_default(addr: SocketAddr, default_reply: Reply) -> std::io::Result<FakeModel> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(server::Shared::new(default_reply));
        let app = server::app(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("fake model server stopped: {e}");
            }
        });
        Ok(FakeModel { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the base URL for either client (no `/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Append replies to the script.
    pub fn script(&self, replies: Vec<Reply>) {
        self.shared.script(replies);
    }

    /// Scripted replies not yet consumed.
    pub fn queued(&self) -> usize {
        self.shared.queued()
    }

    /// Every request received on a provider endpoint, oldest first.
    pub fn requests(&self) -> Vec<CapturedRequest> {
        self.shared.requests()
    }

    /// The reply used when the script is empty.
    pub fn default_reply(&self) -> Reply {
        self.shared.default_reply()
    }

    pub fn set_default_reply(&self, reply: Reply) {
        self.shared.set_default(reply);
    }

    /// Empty the script and the captured requests, and restore the starting default.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// Serve until the task is stopped (used by the binary).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        self.task.abort();
    }
}
