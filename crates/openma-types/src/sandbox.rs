//! What the sandbox server and its clients exchange (JSON bodies, paths, error codes).
//!
//! - `GET  /health` — no credentials: `{"status", "sessions", "isolation"}`.
//! - `PUT  /v1/sessions/{id}` — [`SessionOpen`]: hold the session (an empty workspace when
//!   the server did not), set where its sandbox may connect and, when given, its environment's
//!   packages and limits (the packages' layer starts building at once); `201` while the session is
//!   fresh here (opened by such a request, no tool run and no pack pushed since: a client
//!   restores its copy of the workspace then, even after being cut off mid-way), `204` once
//!   it is not (its files and shell stay).
//! - `POST /v1/sessions/{id}/tools/{name}` — [`ToolCall`] → [`ToolResult`]: run a built-in
//!   tool (`bash` in the session's persistent shell; `read`, `write`, `edit`, `glob`, `grep`).
//! - `PUT  /v1/sessions/{id}/state?mode=full|mounts` — a tar + gzip of the session directory:
//!   `full` replaces the session (ending its shell), `mounts` lays the pack over a session the
//!   server already holds without touching its shell or workspace.
//! - `GET  /v1/sessions/{id}/state?since=<token>` — the session directory as tar + gzip:
//!   whole ([`STATE_KIND`] `full`), or, when `since` is the token of the last answer, only
//!   what changed since and the paths gone (`delta`, see `openma_sandbox::archive::pack_delta`),
//!   or `204` when nothing did. [`STATE_TOKEN`] names this answer for the next `since`.
//! - `GET|PUT /v1/sessions/{id}/files?path=/workspace/…` — one file's bytes.
//! - `POST /v1/sessions/{id}/repositories` — [`RepositoryClone`]: clone a git repository into
//!   the session's workspace (a `github_repository` resource); `400` when it cannot be.
//! - `PUT  /v1/sessions/{id}/memory` — [`MemoryLay`]: the session's mounted memory stores
//!   (`/mnt/memory/<slug>`) and the files to lay into them or remove (for a client that keeps
//!   no copy of the session directory; the native server writes them into its own copy).
//! - `GET  /v1/sessions/{id}/memory/{slug}` — [`MemoryFiles`]: the files of one mount, with
//!   their text, as a tool left them.
//! - `PUT  /v1/sessions/{id}/credentials` — [`SessionCredentials`]: the placeholders of the
//!   session's `environment_variable` credentials, and the secrets its egress proxy puts in
//!   their place (in memory only).
//! - `DELETE /v1/sessions/{id}` — end the shell and delete the session's files.
//! - `POST /v1/layers` — [`LayerQuery`] → [`LayerReport`]: how the layer of a package set
//!   stands on this server, optionally starting its build (the native server's
//!   `GET /v1/environments/{id}/build` with a remote sandbox).
//! - `GET  /v1/sessions` — [`Running`]: the sessions whose sandboxes run now (for a tenant's
//!   limit on running sandboxes, kept by the control plane).
//!
//! Every `/v1` request carries `Authorization: Bearer <token>`. Errors use the Anthropic
//! envelope `{"type":"error","error":{"type","message","code"}}`; a session the server does
//! not hold is a 404 with code [`SESSION_UNKNOWN`], which tells the client to send it whole.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The built-in tools the server runs (`POST …/tools/{name}`), each with whether it is
/// read-only (cannot change the session's files).
pub const TOOLS: [(&str, bool); 6] = [("bash", false), ("read", true), ("write", false), ("edit", false), ("glob", true), ("grep", true)];

/// The error code of a request for a session this server does not hold.
pub const SESSION_UNKNOWN: &str = "session_unknown";

/// `PUT /v1/sessions/{id}`: what the session's sandbox is given without a pack (a client that
/// keeps no copy of the session directory, such as a Workers `SessionDO`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionOpen {
    /// The environment's `networking`; `None`: no network at all.
    #[serde(default)]
    pub networking: Option<crate::environments::Networking>,
    /// The agent's MCP servers (their hosts are reachable when `networking` allows MCP servers).
    #[serde(default)]
    pub mcp_servers: Vec<crate::agents::McpServer>,
    /// The environment's packages and limits; `None` leaves the session's as they are (a
    /// client that sends the session directory, whose manifest holds them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<SandboxEnvironment>,
}

/// What of an environment a session's sandbox applies: the packages mounted from their
/// layer (built on the sandbox server, waited for by the first shell), the limits, and the
/// stdio MCP servers it runs (spoken to through [`mcp_path`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxEnvironment {
    #[serde(default)]
    pub packages: crate::environments::Packages,
    #[serde(default)]
    pub limits: crate::environments::EnvironmentLimits,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_servers: Vec<crate::environments::StdioMcpServer>,
}

/// The path at which the sandbox server speaks MCP's streamable HTTP transport for one of
/// the session's stdio MCP servers (`POST` messages, `DELETE` to end the MCP session): each
/// `initialize` starts the program in the session's sandbox afresh, and its stdin and stdout
/// carry the messages. The name is percent-encoded (any character may be in it).
pub fn mcp_path(session_id: &str, server: &str) -> String {
    let mut name = String::with_capacity(server.len());
    for b in server.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    format!("/v1/sessions/{session_id}/mcp/{name}")
}

/// The header carrying the MCP session the sandbox server gave at `initialize`.
pub const MCP_SESSION: &str = "mcp-session-id";

/// `POST /v1/layers`: a package set, and whether to start building its layer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerQuery {
    pub packages: crate::environments::Packages,
    #[serde(default)]
    pub build: LayerBuild,
}

/// What a [`LayerQuery`] asks of the layer's build.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerBuild {
    /// Only how it stands.
    #[default]
    Status,
    /// Start it unless it is ready, running or failed.
    Start,
    /// Start it unless it is ready or running (after the environment's packages changed).
    Retry,
}

/// How the layer of a package set stands on a sandbox server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerReport {
    pub state: crate::environments::BuildState,
    /// The layer's key (the normalised package lists and the builder's version).
    pub hash: String,
    /// Microseconds since the Unix epoch.
    pub started_at_us: Option<i64>,
    pub finished_at_us: Option<i64>,
    pub error: Option<String>,
    /// The end of the package managers' output.
    pub log: String,
}

impl LayerReport {
    /// The failure with the end of its log (15 lines, 2 kB at most), for an error message.
    pub fn failure(&self) -> String {
        let error = self.error.as_deref().unwrap_or("the build failed");
        let trimmed = self.log.trim_end();
        let start = trimmed.rmatch_indices('\n').nth(14).map(|(i, _)| i + 1).unwrap_or(0);
        let mut tail = &trimmed[start..];
        if tail.len() > 2_000 {
            let mut cut = tail.len() - 2_000;
            while !tail.is_char_boundary(cut) {
                cut += 1;
            }
            tail = &tail[cut..];
        }
        if tail.is_empty() { error.to_owned() } else { format!("{error}; the end of its log:\n{tail}") }
    }
}

/// A memory store mounted into a session at `/mnt/memory/<slug>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryMount {
    /// The directory name below `/mnt/memory/`: lower-case letters, digits and `-`.
    pub slug: String,
    pub writable: bool,
}

/// `PUT /v1/sessions/{id}/memory`: records the session's mounts (their directories are
/// created, bound from the shell's next start: send them before the first tool), then, with
/// `replace`, empties every mount, then writes and removes the files given.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryLay {
    pub mounts: Vec<MemoryMount>,
    #[serde(default)]
    pub replace: bool,
    #[serde(default)]
    pub writes: Vec<MemoryFile>,
    #[serde(default)]
    pub removes: Vec<MemoryPath>,
}

/// A file of a mount to remove.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryPath {
    pub slug: String,
    pub path: String,
}

/// One file of a mount: its path in the store (`/notes/a.md`) and text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryFile {
    pub slug: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Why the file cannot be a memory (not UTF-8 text, too large), instead of `content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// `GET /v1/sessions/{id}/memory/{slug}`: the regular files of a mount (links skipped).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MemoryFiles {
    pub files: Vec<MemoryFile>,
}

/// `POST /v1/sessions/{id}/repositories`: a `github_repository` resource to clone into a
/// session the server holds. The server runs git itself, outside the session's sandbox, with
/// the token as an HTTP header: it never reaches the shell, a command line, `.git/config` or
/// a log line.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryClone {
    /// The git remote: `<GitHub's URL>/<owner>/<repo>.git`.
    pub remote: String,
    #[serde(default)]
    pub checkout: Option<crate::sessions::Checkout>,
    /// Where the clone goes, below `/workspace`.
    pub mount_path: String,
    /// The installation or personal access token the remote is asked with.
    #[serde(default)]
    pub token: Option<String>,
}

impl std::fmt::Debug for RepositoryClone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepositoryClone")
            .field("remote", &self.remote)
            .field("checkout", &self.checkout)
            .field("mount_path", &self.mount_path)
            .field("token", &self.token.as_ref().map(|_| "[write-only]"))
            .finish()
    }
}

/// `PUT /v1/sessions/{id}/credentials`: the session's `environment_variable` credentials. The
/// variables are the shell's from its next start (send them before the first tool); the
/// substitutions are held in the server's memory only, never on its disk, and replaced whole
/// by each `PUT`: its egress proxy puts each secret in place of its placeholder in requests
/// to the credential's hosts, in the enabled locations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionCredentials {
    #[serde(default)]
    pub variables: Vec<CredentialVariable>,
    #[serde(default)]
    pub substitutions: Vec<CredentialSubstitution>,
}

/// A variable of the session's shell: a credential's `secret_name` and its placeholder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialVariable {
    pub name: String,
    pub value: String,
}

/// One credential as the egress proxy applies it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSubstitution {
    pub placeholder: String,
    pub secret: String,
    /// Hosts (exact or `*.domain`) the secret may go to; `None`: any host the session's
    /// network policy allows.
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
    pub header: bool,
    pub body: bool,
}

impl CredentialSubstitution {
    /// Whether the secret may go to `host` (any host when `hosts` is `None`).
    pub fn applies_to(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match &self.hosts {
            None => true,
            Some(hosts) => hosts.iter().any(|p| match p.strip_prefix("*.") {
                Some(domain) => host.ends_with(&format!(".{}", domain.to_ascii_lowercase())),
                None => host == p.to_ascii_lowercase(),
            }),
        }
    }
}

impl std::fmt::Debug for CredentialSubstitution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSubstitution")
            .field("placeholder", &self.placeholder)
            .field("secret", &"[redacted]")
            .field("hosts", &self.hosts)
            .field("header", &self.header)
            .field("body", &self.body)
            .finish()
    }
}

/// One tool run.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    /// The tool's input as the model gave it.
    pub input: Value,
    /// The agent's configuration of the tool, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<crate::agents::BuiltinToolConfig>,
    /// Who the session belongs to (for the sandbox's log lines).
    #[serde(default)]
    pub tenant: String,
    #[serde(default)]
    pub environment_id: String,
}

/// What a tool run gave.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ToolResult {
    pub content: Vec<Value>,
    pub is_error: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Whether the session's sandbox (its shell) runs after the call.
    #[serde(default)]
    pub running: bool,
}

/// `GET /v1/sessions`: the sessions whose sandboxes run now.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Running {
    pub running: Vec<String>,
}

/// Sandbox time one tool run took.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Usage {
    pub wall_ms: u64,
    pub cpu_ms: u64,
}

/// How a pushed pack is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateMode {
    /// Replace the session: any running shell ends, the directory becomes the pack.
    Full,
    /// Lay the pack over the session's directory; its shell and workspace stay. A session the
    /// server does not hold is refused with [`SESSION_UNKNOWN`].
    Mounts,
}

impl StateMode {
    /// The mode as the `mode` query parameter spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            StateMode::Full => "full",
            StateMode::Mounts => "mounts",
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct StateQuery {
    pub mode: StateMode,
}

/// Response header: `full` or `delta`.
pub const STATE_KIND: &str = "x-openma-state";
/// Response header: the token of the state this answer brings the client to.
pub const STATE_TOKEN: &str = "x-openma-state-token";

#[derive(Debug, Default, Deserialize)]
pub struct SinceQuery {
    #[serde(default)]
    pub since: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct FileQuery {
    pub path: String,
}

/// `GET /health`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    /// Sessions whose directories this server holds.
    pub sessions: usize,
    /// How sessions are isolated (`bubblewrap …`), or why they cannot be.
    pub isolation: String,
}

/// The error envelope's inner object.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    #[serde(rename = "type")]
    pub kind: String,
    pub error: ErrorBody,
}
