//! What a sandbox may use: where workspaces live, the rlimits around each shell, timeouts
//! and how much output reaches the model.

use std::path::PathBuf;
use std::time::Duration;

/// Configuration of every session sandbox this process runs.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Host directory holding one subdirectory per session (`<root>/<session_id>/workspace`
    /// is the session's `/workspace`). Created if missing.
    pub root: PathBuf,
    pub limits: Limits,
    /// A shell unused for longer than this is stopped by [`crate::Sandboxes::reap_idle`]
    /// (its workspace stays).
    pub idle_timeout: Duration,
    /// Sessions run as host uid/gid `uid_base + hash(session_id) % uid_count`, so that no
    /// session shares the server's uid and RLIMIT_NPROC counts one session's processes.
    pub uid_base: u32,
    pub uid_count: u32,
    /// How networked sandboxes reach the outside: the bridge executable, the proxy's
    /// connect timeout, test-only resolution overrides, the request hook.
    pub egress: crate::network::EgressSettings,
}

impl SandboxConfig {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SandboxConfig {
            root: root.into(),
            limits: Limits::default(),
            idle_timeout: Duration::from_secs(30 * 60),
            uid_base: 200_000,
            uid_count: 100_000,
            egress: crate::network::EgressSettings::default(),
        }
    }
}

/// Resource limits of one session sandbox.
#[derive(Clone, Debug)]
pub struct Limits {
    /// RLIMIT_AS and RLIMIT_DATA of every process in the sandbox (per process, not a total:
    /// the machines have no usable cgroup v2).
    pub memory_bytes: u64,
    /// RLIMIT_NPROC: processes and threads of the session's uid.
    pub processes: u64,
    /// RLIMIT_NOFILE.
    pub open_files: u64,
    /// RLIMIT_FSIZE: the largest file a process in the sandbox may write.
    pub file_size_bytes: u64,
    /// Scheduling niceness of everything in the sandbox (0–19): commands yield the CPU to
    /// the server.
    pub nice: u8,
    /// Size of the private tmpfs at `/tmp` (and of `/dev/shm`).
    pub tmp_bytes: u64,
    /// Wall-clock timeout of a bash command when the call gives none.
    pub default_timeout: Duration,
    /// Upper bound on a call's `timeout_ms`.
    pub max_timeout: Duration,
    /// Characters of tool output the model sees; longer output is saved to a file in the
    /// workspace and the result names it.
    pub output_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 8 << 30,
            processes: 1024,
            open_files: 4096,
            file_size_bytes: 4 << 30,
            nice: 10,
            tmp_bytes: 2 << 30,
            default_timeout: Duration::from_secs(120),
            max_timeout: Duration::from_secs(600),
            output_chars: 100_000,
        }
    }
}
