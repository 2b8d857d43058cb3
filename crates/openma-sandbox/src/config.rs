//! What a sandbox may use: where workspaces live, the rlimits around each shell, timeouts
//! and how much output reaches the model.

use std::path::PathBuf;
use std::time::Duration;

pub use openma_types::environments::EnvironmentLimits;

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
    /// Host directory of the cached package layers (`<layers>/<hash>/root`), built once per
    /// distinct package set and bound read-only into sandboxes. Default: `layers` beside `root`.
    pub layers: PathBuf,
    /// A package layer build taking longer than this fails.
    pub build_timeout: Duration,
    /// How long a sandbox start waits for its environment's layer to be built.
    pub layer_wait: Duration,
}

impl SandboxConfig {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root: PathBuf = root.into();
        let layers = match root.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.join("layers"),
            _ => root.join(".layers"),
        };
        SandboxConfig {
            root,
            layers,
            build_timeout: Duration::from_secs(600),
            layer_wait: Duration::from_secs(900),
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
        // the bounds environments see come from one place, shared with the Workers
        let d = openma_types::environments::EnvironmentLimits::SANDBOX_DEFAULTS;
        let mib = |v: Option<u64>| v.expect("SANDBOX_DEFAULTS sets every limit") << 20;
        Limits {
            memory_bytes: mib(d.memory_mb),
            processes: d.processes.expect("SANDBOX_DEFAULTS sets every limit"),
            open_files: d.open_files.expect("SANDBOX_DEFAULTS sets every limit"),
            file_size_bytes: mib(d.file_size_mb),
            nice: 10,
            tmp_bytes: 2 << 30,
            default_timeout: Duration::from_secs(120),
            max_timeout: Duration::from_secs(d.bash_timeout_max_s.expect("SANDBOX_DEFAULTS sets every limit")),
            output_chars: 100_000,
        }
    }
}

impl Limits {
    /// These (the server's) limits lowered by an environment's `config.limits`, never raised:
    /// the server's stay the ceiling.
    pub fn lowered_by(&self, env: &EnvironmentLimits) -> Limits {
        let mut l = self.clone();
        let low = |cur: u64, v: Option<u64>| v.map_or(cur, |v| v.max(1).min(cur));
        l.memory_bytes = low(l.memory_bytes, env.memory_mb.map(|v| v.saturating_mul(1 << 20)));
        l.processes = low(l.processes, env.processes);
        l.open_files = low(l.open_files, env.open_files);
        l.file_size_bytes = low(l.file_size_bytes, env.file_size_mb.map(|v| v.saturating_mul(1 << 20)));
        if let Some(s) = env.bash_timeout_max_s {
            l.max_timeout = l.max_timeout.min(Duration::from_secs(s.max(1)));
            l.default_timeout = l.default_timeout.min(l.max_timeout);
        }
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_limits_lower_the_servers_and_never_raise_them() {
        let server = Limits::default();
        let o = EnvironmentLimits { open_files: Some(256), bash_timeout_max_s: Some(30), memory_mb: Some(1 << 40), ..Default::default() };
        let l = server.lowered_by(&o);
        assert_eq!(l.open_files, 256);
        assert_eq!(l.max_timeout, Duration::from_secs(30));
        assert_eq!(l.default_timeout, Duration::from_secs(30));
        assert_eq!(l.memory_bytes, server.memory_bytes);
        assert_eq!(l.processes, server.processes);
    }
}
