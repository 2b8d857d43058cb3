#![forbid(unsafe_code)]
//! Per-session Linux sandboxes and the built-in tools that run in them.
//!
//! Each session gets a bubblewrap sandbox (own user, pid, ipc, uts, network and cgroup
//! namespaces; loopback-only network, and for a session with networking one way out: an
//! egress proxy on the host, see [`network`]), running as its own unprivileged host uid with
//! rlimits, that sees read-only system directories, a generated `/etc`, a private `/tmp`
//! and its persistent `/workspace` (`<root>/<session_id>/workspace` on the host) — nothing
//! else of the host. The `bash` tool talks to one long-lived shell per session inside it;
//! the file tools (`read`, `write`, `edit`, `glob`, `grep`) work on the workspace from the
//! host side with path resolution that cannot leave it.
//!
//! ```no_run
//! # async fn demo() {
//! use openma_sandbox::{SandboxConfig, Sandboxes};
//! Sandboxes::check().expect("bubblewrap");
//! let sandboxes = Sandboxes::new(SandboxConfig::new("/var/lib/openma/sandboxes"));
//! for (name, tool) in sandboxes.tools() { /* toolbox.register(name, tool) */ }
//! # }
//! ```

pub mod archive;
mod bwrap;
mod config;
mod files;
mod fs_tools;
pub mod intercept;
mod mounts;
pub mod network;
mod output;
mod packages;
mod paths;
mod procs;
mod repos;
mod shell;
mod stdio;
mod tools;

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use config::{EnvironmentLimits, Limits, SandboxConfig};
pub use mounts::{MemoryMount, OutputFile};
pub use network::{EgressHook, EgressPolicy, EgressSettings, LimitedEgress, ResolveOverrides};
pub use packages::{LAYER_UNUSED_FOR, LayerState, LayerStatus, Layers, PackageSet};
pub use stdio::SandboxProcess;

use bwrap::SessionPaths;
use procs::ProcId;
use shell::Shell;

/// The sandboxes of every session this process serves. Cheap to clone.
#[derive(Clone)]
pub struct Sandboxes {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    config: SandboxConfig,
    /// Root may switch to per-session uids; otherwise sandboxes run as our own uid.
    as_root: bool,
    sessions: Mutex<HashMap<String, Arc<SessionBox>>>,
    layers: Layers,
}

/// What a session takes from its environment when it is created (later changes to the
/// environment do not reach it): its packages and limits. Kept in the session's host dir, so
/// the choice survives restarts and idle reaping.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SessionEnvironment {
    #[serde(default)]
    pub packages: PackageSet,
    #[serde(default)]
    pub limits: EnvironmentLimits,
    /// The environment's stdio MCP servers (run in the sandbox with [`Sandboxes::spawn_stdio`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_servers: Vec<openma_types::environments::StdioMcpServer>,
}

const ENVIRONMENT_MANIFEST: &str = "environment.json";

impl SessionEnvironment {
    /// The session's recorded environment (the default when it has none).
    pub(crate) fn of(paths: &SessionPaths) -> SessionEnvironment {
        std::fs::read(paths.dir.join(ENVIRONMENT_MANIFEST))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }
}

/// One session's sandbox.
pub(crate) struct SessionBox {
    uid: Option<u32>,
    paths: SessionPaths,
    /// The running shell, if any; held for the whole of a bash call.
    shell: tokio::sync::Mutex<Option<Shell>>,
    last_used: Mutex<Instant>,
    /// The running sandbox (outer bwrap pid, its pid 1), readable without the shell lock so
    /// that `destroy` can kill it while a command runs.
    running: Mutex<Option<(u32, ProcId)>>,
    /// A bash call was dropped mid-command: its sandbox was killed and must be replaced.
    interrupted: std::sync::atomic::AtomicBool,
    /// Where the sandbox may connect (read by its proxy for every connection).
    egress: Arc<std::sync::RwLock<EgressPolicy>>,
    /// Why an earlier shell is gone, when a new one was started by something other than
    /// bash (a stdio process): the next bash result says it.
    started_note: Mutex<Option<String>>,
}

impl SessionBox {
    fn set_running(&self, shell: Option<&Shell>) {
        let v = shell.and_then(|s| s.pids().first().map(|outer| (*outer, s.init)));
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = v;
    }

    fn running(&self) -> Option<(u32, ProcId)> {
        *self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn idle_for(&self) -> std::time::Duration {
        self.last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    /// Why the session's shell is gone, told with the next command's result. Kept in the
    /// session's host dir, so it survives this process (a shell running now says "the server
    /// restarted" should the server die).
    fn shell_lost(&self, reason: &str) {
        let _ = std::fs::write(self.paths.dir.join("shell.lost"), reason);
    }

    fn lost_reason(&self) -> Option<String> {
        std::fs::read_to_string(self.paths.dir.join("shell.lost"))
            .ok()
            .filter(|r| !r.is_empty())
    }

    fn take_lost_reason(&self) -> Option<String> {
        let path = self.paths.dir.join("shell.lost");
        let reason = std::fs::read_to_string(&path)
            .ok()
            .filter(|r| !r.is_empty());
        let _ = std::fs::remove_file(path);
        reason
    }
}

impl Sandboxes {
    pub fn new(mut config: SandboxConfig) -> Self {
        // bwrap runs with `/` as its working directory: a relative root would point elsewhere.
        if let Ok(abs) = std::path::absolute(&config.root) {
            config.root = abs;
        }
        if let Ok(abs) = std::path::absolute(&config.layers) {
            config.layers = abs;
        }
        let layers = Layers::new(config.layers.clone(), config.build_timeout);
        Sandboxes {
            inner: Arc::new(Inner {
                config,
                as_root: bwrap::running_as_root(),
                sessions: Mutex::new(HashMap::new()),
                layers,
            }),
        }
    }

    /// The cached package layers.
    pub fn layers(&self) -> &Layers {
        &self.inner.layers
    }

    /// Deletes the package layers no sandbox mounted for `unused_for` that no session of this
    /// host names (see [`Layers::collect`]); the number deleted.
    pub fn collect_layers(&self, unused_for: std::time::Duration) -> usize {
        let mut keep = std::collections::HashSet::new();
        for e in std::fs::read_dir(&self.inner.config.root).into_iter().flatten().flatten() {
            let Ok(bytes) = std::fs::read(e.path().join(ENVIRONMENT_MANIFEST)) else { continue };
            if let Ok(env) = serde_json::from_slice::<SessionEnvironment>(&bytes)
                && !env.packages.is_empty()
            {
                keep.insert(env.packages.hash());
            }
        }
        self.inner.layers.collect(&keep, unused_for)
    }

    /// Records what the session takes from its environment (packages, limits); its sandbox
    /// uses them from its next start. Call it before the session's first tool call.
    pub fn set_environment(&self, session_id: &str, env: &SessionEnvironment) -> io::Result<()> {
        let session = self.inner.session(session_id).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let path = session.paths.dir.join(ENVIRONMENT_MANIFEST);
        if *env == SessionEnvironment::default() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        std::fs::write(path, serde_json::to_vec(env).map_err(io::Error::other)?)
    }

    /// What the session took from its environment at create (the default when nothing).
    pub fn environment(&self, session_id: &str) -> SessionEnvironment {
        if !bwrap::valid_session_id(session_id) {
            return SessionEnvironment::default();
        }
        SessionEnvironment::of(&SessionPaths::new(&self.inner.config.root, session_id))
    }

    /// Whether this host can run sandboxes: `Ok("bubblewrap 0.8.0")`, or what to install.
    pub fn check() -> Result<String, String> {
        bwrap::check()
    }

    /// Creates the sandbox root and verifies that sessions can reach their workspaces under
    /// it: bubblewrap runs as each session's uid, which must be able to traverse (`x`) every
    /// directory above the root. Call it at start-up to fail early with a clear reason.
    pub fn preflight(&self) -> Result<(), String> {
        let root = &self.inner.config.root;
        bwrap::prepare_root(root)
            .map_err(|e| format!("cannot create the sandbox root {}: {e}", root.display()))?;
        if !self.inner.as_root {
            return Ok(());
        }
        network::check_bridge(&self.inner.config.egress.bridge)?;
        use std::os::unix::fs::PermissionsExt;
        for dir in root.ancestors().skip(1) {
            let mode = std::fs::metadata(dir)
                .map_err(|e| format!("{}: {e}", dir.display()))?
                .permissions()
                .mode();
            if mode & 0o001 == 0 {
                return Err(format!(
                    "{} (mode {:o}) cannot be traversed by other users, but each sandbox runs as its own uid and must reach {} through it: `chmod o+x {}` (no read access needed) or put the sandbox root elsewhere",
                    dir.display(),
                    mode & 0o7777,
                    root.display(),
                    dir.display()
                ));
            }
        }
        Ok(())
    }

    /// Sets where the session's sandbox may connect, kept in its host dir (so a sandbox
    /// restarted later, by this process or the next, gets it too). A running proxy applies it
    /// to its next connection; switching between no network and some network takes effect
    /// when the sandbox next starts. Sessions never given a policy have no network.
    pub fn set_egress_policy(&self, session_id: &str, policy: &EgressPolicy) -> io::Result<()> {
        let session = self.inner.session(session_id).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let json = serde_json::to_vec(policy).map_err(io::Error::other)?;
        let tmp = session.paths.dir.join(".egress.json.tmp");
        std::fs::write(&tmp, json)?;
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        std::fs::rename(&tmp, &session.paths.egress_policy)?;
        *session.egress.write().unwrap_or_else(|e| e.into_inner()) = policy.clone();
        Ok(())
    }

    /// Records environment variables for the session's shell (from its next start on), e.g.
    /// the placeholders of its credentials. Names must be plain identifiers.
    pub fn set_session_env(&self, session_id: &str, vars: &[(String, String)]) -> io::Result<()> {
        let session = self.inner.session(session_id).map_err(io::Error::other)?;
        let ok = |n: &str| !n.is_empty() && !n.starts_with(|c: char| c.is_ascii_digit()) && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if let Some((bad, _)) = vars.iter().find(|(n, v)| !ok(n) || v.contains('\0')) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("`{bad}` cannot be an environment variable")));
        }
        let tmp = session.paths.dir.join(".env.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(vars).map_err(io::Error::other)?)?;
        std::fs::rename(&tmp, session.paths.dir.join("env.json"))
    }

    /// The variables recorded with [`Self::set_session_env`] (none for an unknown session).
    pub fn session_env(&self, session_id: &str) -> Vec<(String, String)> {
        if !bwrap::valid_session_id(session_id) {
            return Vec::new();
        }
        bwrap::session_env(&SessionPaths::new(&self.inner.config.root, session_id))
    }

    /// The session's egress policy ([`EgressPolicy::None`] when it has none).
    pub fn egress_policy(&self, session_id: &str) -> EgressPolicy {
        match self.inner.session(session_id) {
            Ok(s) => s.egress.read().unwrap_or_else(|e| e.into_inner()).clone(),
            Err(_) => EgressPolicy::None,
        }
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// The session's host directory (its workspace and what its sandbox keeps), `None` for
    /// an id that cannot be a session's.
    pub fn session_dir(&self, session_id: &str) -> Option<std::path::PathBuf> {
        bwrap::valid_session_id(session_id).then(|| SessionPaths::new(&self.inner.config.root, session_id).dir)
    }

    /// Kills the session's processes and deletes its workspace.
    pub async fn destroy(&self, session_id: &str) -> io::Result<()> {
        if !bwrap::valid_session_id(session_id) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid session id",
            ));
        }
        let session = self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(session_id);
        if let Some(session) = session {
            // Kill first: a command holding the shell lock then ends at once.
            if let Some((_, init)) = session.running() {
                procs::signal(init, rustix::process::Signal::KILL);
            }
            let mut slot = session.shell.lock().await;
            if let Some(mut shell) = slot.take() {
                shell.kill().await;
            }
            session.set_running(None);
        }
        let dir = SessionPaths::new(&self.inner.config.root, session_id).dir;
        tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Stops shells unused for longer than `idle_timeout` (their workspaces stay; the next
    /// command starts a new shell). Returns how many were stopped.
    pub async fn reap_idle(&self) -> usize {
        let sessions: Vec<(String, Arc<SessionBox>)> = self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let idle = self.inner.config.idle_timeout;
        let mut stopped = 0;
        for (id, session) in sessions {
            // A shell busy with a command is not idle.
            let Ok(mut slot) = session.shell.try_lock() else {
                continue;
            };
            if session.idle_for() < idle {
                continue;
            }
            if let Some(mut shell) = slot.take() {
                shell.kill().await;
                session.set_running(None);
                session.shell_lost(&format!(
                    "the previous one was stopped after {} s idle",
                    idle.as_secs()
                ));
                stopped += 1;
            }
            // Forget sessions without a shell: their state is all on disk.
            drop(slot);
            let mut map = self
                .inner
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if map.get(&id).is_some_and(|s| Arc::ptr_eq(s, &session))
                && Arc::strong_count(&session) == 2
            {
                map.remove(&id);
            }
        }
        stopped
    }

    /// Whether the session's sandbox runs now (its shell is alive), without looking at its
    /// processes.
    pub fn is_running(&self, session_id: &str) -> bool {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(session_id)
            .is_some_and(|s| s.running().is_some())
    }

    /// The sessions whose sandboxes run now.
    pub fn running_sessions(&self) -> Vec<String> {
        let sessions = self.inner.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.iter().filter(|(_, s)| s.running().is_some()).map(|(id, _)| id.clone()).collect()
    }

    /// Host pids of a session's running sandbox (bubblewrap and every process inside it);
    /// empty when its shell is not running.
    pub fn sandbox_pids(&self, session_id: &str) -> Vec<u32> {
        let session = self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(session_id)
            .cloned();
        let Some((outer, init)) = session.and_then(|s| s.running()) else {
            return Vec::new();
        };
        let mut pids = vec![outer, init.pid];
        pids.extend(procs::descendants(init.pid).into_iter().map(|p| p.pid));
        pids
    }

    /// Resident memory of a session's sandbox in KiB (sum of VmRSS of its processes).
    pub fn memory_kib(&self, session_id: &str) -> u64 {
        self.sandbox_pids(session_id)
            .into_iter()
            .map(procs::rss_kib)
            .sum()
    }

    /// Cuts text for the model as command output is cut: at most `output_chars`
    /// characters (its head and tail); the whole text is saved in the session's workspace
    /// (`/workspace/.openma/outputs/…`) and the returned text names the file.
    pub fn cap_text(&self, session_id: &str, text: &str) -> Result<String, String> {
        let limits = &self.inner.config.limits;
        if text.chars().count() <= limits.output_chars {
            return Ok(text.to_owned());
        }
        let session = self.inner.session(session_id)?;
        let target = output::SpillTarget { workspace: session.paths.workspace.clone(), uid: session.uid };
        let mut capture = output::Capture::new(limits.output_chars, limits.file_size_bytes, target);
        capture.push(text.as_bytes());
        Ok(capture.finish().text)
    }

    /// The host uid a session's processes run as (None when the server is not root).
    pub fn session_uid(&self, session_id: &str) -> Option<u32> {
        self.inner
            .as_root
            .then(|| bwrap::session_uid(&self.inner.config, session_id))
    }
}

impl Inner {
    /// The session's sandbox, its directories created on first use.
    fn session(&self, session_id: &str) -> Result<Arc<SessionBox>, String> {
        if !bwrap::valid_session_id(session_id) {
            return Err(format!("invalid session id for a sandbox: {session_id:?}"));
        }
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sessions.get(session_id) {
            return Ok(s.clone());
        }
        let uid = self
            .as_root
            .then(|| bwrap::session_uid(&self.config, session_id));
        let paths = SessionPaths::new(&self.config.root, session_id);
        bwrap::prepare_dirs(&self.config.root, &paths, uid)
            .map_err(|e| format!("cannot prepare the session's workspace: {e}"))?;
        let paths_egress = paths.egress_policy.clone();
        let session = Arc::new(SessionBox {
            uid,
            paths,
            shell: tokio::sync::Mutex::new(None),
            last_used: Mutex::new(Instant::now()),
            running: Mutex::new(None),
            interrupted: Default::default(),
            egress: Arc::new(std::sync::RwLock::new(load_egress_policy(&paths_egress))),
            started_note: Mutex::new(None),
        });
        sessions.insert(session_id.to_string(), session.clone());
        Ok(session)
    }
}

/// A session's persisted egress policy; none (no network) when missing or unreadable.
fn load_egress_policy(path: &std::path::Path) -> EgressPolicy {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "unreadable sandbox egress policy: no network");
            EgressPolicy::None
        }),
        Err(_) => EgressPolicy::None,
    }
}
