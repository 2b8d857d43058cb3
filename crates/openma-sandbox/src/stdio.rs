//! Programs other than the shell that run inside a session's sandbox and are spoken to
//! over their stdin and stdout (an environment's stdio MCP servers).
//!
//! Such a program joins the running sandbox rather than getting one of its own: `nsenter`
//! enters the namespaces of the session's shell (user, mount, network, pid, ipc, uts,
//! cgroup), its root and `/workspace`, switches to the session's uid, and execs `prlimit`
//! (the sandbox's rlimits) and `setpriv --no-new-privs` before the program. So it sees the
//! files the agent's commands see, goes out only through the session's egress proxy, holds
//! no capability, and is killed with the sandbox (it lives in the sandbox's pid namespace).
//! The sandbox is started first if it is not running.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::procs::{self, ProcId};
use crate::{Sandboxes, SessionEnvironment, bwrap, tools};

pub(crate) const NSENTER: &str = "/usr/bin/nsenter";

/// A program running in a session's sandbox. Dropping it kills the program.
pub struct SandboxProcess {
    /// `nsenter` on the host, whose child (in the sandbox) is the program.
    child: Child,
    program: Option<ProcId>,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
}

impl SandboxProcess {
    /// The program's stdout and stdin (once).
    pub fn take_io(&mut self) -> Option<(ChildStdout, ChildStdin)> {
        Some((self.stdout.take()?, self.stdin.take()?))
    }

    /// Whether the program still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        if let Some(p) = self.program {
            procs::signal(p, rustix::process::Signal::KILL);
        }
        let _ = self.child.start_kill();
    }
}

impl Sandboxes {
    /// Starts `command` (program and arguments, the program looked up on the sandbox's
    /// `PATH`) in the session's sandbox with the sandbox's environment plus `env`, and its
    /// stderr in this process's log at debug level.
    pub async fn spawn_stdio(&self, session_id: &str, command: &[String], env: &BTreeMap<String, String>) -> Result<SandboxProcess, String> {
        let inner = &self.inner;
        if command.first().is_none_or(|p| p.is_empty()) {
            return Err("no program to run".into());
        }
        let session = inner.session(session_id)?;
        let environment = SessionEnvironment::of(&session.paths);
        let limits = inner.config.limits.lowered_by(&environment.limits);
        let mut slot = session.shell.lock().await;
        session.touch();
        if let Some(reason) = tools::ensure_shell(inner, &session, &mut slot, &limits, &environment).await? {
            // the next bash call tells the model why its shell is new
            *session.started_note.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        }
        let shell = slot.as_ref().ok_or("the sandbox is not running")?;
        if procs::start_time(shell.shell.pid) != Some(shell.shell.start) {
            return Err("the sandbox's shell is gone".into());
        }
        let uid = session.uid.unwrap_or_else(|| rustix::process::geteuid().as_raw());
        let mut cmd = tokio::process::Command::new(bwrap::NICE);
        cmd.arg("-n").arg(limits.nice.min(19).to_string()).arg(NSENTER);
        cmd.arg(format!("--target={}", shell.shell.pid));
        cmd.args(["--user", "--mount", "--net", "--pid", "--ipc", "--uts", "--cgroup", "--root", "--wdns=/workspace"]);
        cmd.arg(format!("--setuid={uid}")).arg(format!("--setgid={uid}"));
        cmd.args(["--", bwrap::PRLIMIT]);
        cmd.args(bwrap::prlimit_args(&limits));
        cmd.args(["--", bwrap::SETPRIV, "--no-new-privs", "--"]);
        cmd.args(command);
        cmd.env_clear();
        cmd.envs(shell.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.envs(env);
        cmd.current_dir("/");
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| format!("cannot start `{}` in the sandbox: {e}", command[0]))?;
        drop(slot);
        let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        // nice execs nsenter, which forks the program into the sandbox's pid namespace
        let program = match child.id() {
            Some(pid) => find_child(pid).await,
            None => None,
        };
        if let Some(stderr) = stderr {
            let (session_id, name) = (session_id.to_owned(), command[0].clone());
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                let mut n = 0u32;
                while let Ok(Some(line)) = lines.next_line().await {
                    n += 1;
                    if n <= 1000 {
                        let line: String = line.chars().take(2000).collect();
                        tracing::debug!(session_id = %session_id, program = %name, "sandbox process stderr: {line}");
                    }
                }
            });
        }
        Ok(SandboxProcess { child, program, stdin, stdout })
    }

    /// Marks the session's sandbox as in use, so that idle reaping leaves it running.
    pub fn touch(&self, session_id: &str) {
        let session = self.inner.sessions.lock().unwrap_or_else(|e| e.into_inner()).get(session_id).cloned();
        if let Some(s) = session {
            s.touch();
        }
    }
}

/// The child `nsenter` forks (it appears within milliseconds; None if it never does).
async fn find_child(pid: u32) -> Option<ProcId> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Some(&c) = procs::children(pid).first()
            && let Some(start) = procs::start_time(c)
        {
            return Some(ProcId { pid: c, start });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}
