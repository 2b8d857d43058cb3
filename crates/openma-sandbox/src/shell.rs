//! The persistent bash of a session: one `bash --noprofile --norc` inside the sandbox,
//! fed commands on stdin, stdout and stderr merged on one pipe.
//!
//! Protocol of one call: the command travels as the body of a quoted heredoc (so it is
//! data, never parsed by our wrapper), is run with `eval` in the shell itself (so `cd`,
//! `export` and functions persist) with stdin from /dev/null (so it cannot eat the
//! protocol), and is followed by a sentinel line carrying a per-call random tag and `$?`.
//! We read until the sentinel; background processes that keep the pipe open do not matter.
//!
//! On timeout we kill every process the command created (those not alive when it began),
//! leaving the shell; if the shell still does not come back (a builtin loop, a fork bomb
//! started earlier) we kill every process but the shell, and then the whole sandbox.

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::process::{Child, ChildStdin};
use tokio::time::{Instant, timeout, timeout_at};

use crate::bwrap::{self, SessionPaths};
use crate::config::Limits;
use crate::network::SandboxNet;
use crate::output::Capture;
use crate::procs::{self, ProcId};

/// How long the shell gets to come back after its command's processes were killed.
const GRACE: Duration = Duration::from_secs(2);
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) struct Shell {
    child: Child,
    stdin: ChildStdin,
    out: pipe::Receiver,
    /// bwrap's pid 1 inside the sandbox: every sandbox process descends from it.
    pub init: ProcId,
    /// The bash process.
    pub shell: ProcId,
    /// The network bridge (a child of bash, started before it), spared when a command's
    /// processes are killed.
    pub bridge: Option<ProcId>,
    /// The session's egress proxy, stopped with the shell.
    _proxy: Option<crate::network::proxy::EgressProxy>,
    /// Bytes read after the last sentinel (output of background processes).
    leftover: Vec<u8>,
    /// The environment the shell started with (for other processes started in the sandbox).
    pub env: Vec<(String, String)>,
}

#[derive(Debug)]
pub(crate) enum Outcome {
    /// The command finished with this exit code.
    Done(i32),
    /// The command ran out of time; its processes were killed. `code` is set when the
    /// shell survived (and is still usable).
    TimedOut { code: Option<i32> },
    /// The shell itself exited (the command ran `exit`, or it crashed).
    ShellExited { code: Option<i32> },
}

impl Shell {
    pub async fn start(
        root: &Path,
        paths: &SessionPaths,
        uid: Option<u32>,
        limits: &Limits,
        net: Option<SandboxNet>,
        layer: Option<&Path>,
    ) -> Result<Shell, String> {
        bwrap::prepare_dirs(root, paths, uid)
            .map_err(|e| format!("cannot prepare the workspace: {e}"))?;
        let passwd_uid = uid.unwrap_or_else(|| rustix::process::geteuid().as_raw());
        bwrap::write_etc(paths, passwd_uid)
            .map_err(|e| format!("cannot write the sandbox's /etc: {e}"))?;
        let mut cmd = bwrap::shell_command(paths, uid, limits, net.as_ref(), layer);
        let env = bwrap::sandbox_env(paths, net.as_ref(), layer.is_some());
        let networked = net.is_some();
        let (reader, writer) = std::io::pipe().map_err(|e| format!("cannot create a pipe: {e}"))?;
        let writer2 = writer
            .try_clone()
            .map_err(|e| format!("cannot create a pipe: {e}"))?;
        cmd.stdin(Stdio::piped())
            .stdout(writer)
            .stderr(writer2)
            .kill_on_drop(true);
        let spawned = cmd.spawn();
        // The command holds our copies of the pipe's write end: drop them so that the
        // sandbox's end of the pipe is the only one (EOF = the sandbox is gone).
        drop(cmd);
        let mut child = spawned.map_err(|e| format!("cannot start bubblewrap: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let out = pipe::Receiver::from_owned_fd(reader.into()).map_err(|e| format!("pipe: {e}"))?;
        let outer = child.id().ok_or("bubblewrap exited at once")?;
        let mut shell = Shell {
            child,
            stdin,
            out,
            init: ProcId { pid: 0, start: 0 },
            shell: ProcId { pid: 0, start: 0 },
            bridge: None,
            _proxy: net.map(|n| n.proxy),
            leftover: Vec::new(),
            env,
        };
        // The first exchange proves the sandbox works; anything printed before the
        // sentinel is bubblewrap's complaint.
        let script = "builtin cd /workspace || builtin exit 97\numask 022\n";
        match shell.exchange(script, START_TIMEOUT).await {
            Exchange::Sentinel { output, code: 0 }
                if output.iter().all(u8::is_ascii_whitespace) => {}
            Exchange::Sentinel { output, .. } | Exchange::Eof { output } => {
                shell.kill().await;
                let said = String::from_utf8_lossy(&output).trim().to_string();
                let hint = if said.contains("Permission denied") {
                    " (every directory above the sandbox root must be traversable by other users: see Sandboxes::preflight)"
                } else {
                    ""
                };
                return Err(format!("the sandbox did not start: {said}{hint}"));
            }
            Exchange::TimedOut { .. } => {
                shell.kill().await;
                return Err("the sandbox did not start within 20 s".into());
            }
        }
        // outer bwrap → bwrap as pid 1 of the sandbox → bash.
        let init = procs::children(outer).first().copied();
        let bash = init.and_then(|i| procs::children(i).first().copied());
        match (init, bash) {
            (Some(i), Some(b)) => {
                shell.init = ProcId {
                    pid: i,
                    start: procs::start_time(i).unwrap_or(0),
                };
                shell.shell = ProcId {
                    pid: b,
                    start: procs::start_time(b).unwrap_or(0),
                };
                // the bridge is bash's only child before any command runs
                if networked {
                    shell.bridge = procs::children(b)
                        .first()
                        .and_then(|&p| procs::start_time(p).map(|start| ProcId { pid: p, start }));
                }
            }
            _ => {
                shell.kill().await;
                return Err("the sandbox's processes could not be found in /proc".into());
            }
        }
        Ok(shell)
    }

    /// Whether the sandbox is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Runs one command; its output goes to `capture`.
    pub async fn run(&mut self, command: &str, limit: Duration, capture: &mut Capture) -> Outcome {
        let tag = ulid::Ulid::new().to_string();
        let delim = format!("__OPENMA_CMD_{tag}__");
        let script = format!(
            "IFS= builtin read -r -d '' __openma_cmd <<'{delim}'\n{command}\n{delim}\n\
             builtin eval \"$__openma_cmd\" < /dev/null\n\
             __openma_rc=$?\n\
             builtin unset __openma_cmd\n\
             builtin printf '\\n__OPENMA_%s__ %d\\n' {tag} \"$__openma_rc\"\n\
             builtin unset __openma_rc\n"
        );
        let before: HashSet<ProcId> = procs::descendants(self.init.pid).into_iter().collect();
        let deadline = Instant::now() + limit;
        let mut phase = 0;
        let mut timed_out = false;
        let finder_text = format!("\n__OPENMA_{tag}__ ");
        let finder = memmem::Finder::new(finder_text.as_bytes());
        let mut pending = std::mem::take(&mut self.leftover);

        if timeout_at(deadline, self.stdin.write_all(script.as_bytes()))
            .await
            .map(|r| r.is_err())
            .unwrap_or(true)
        {
            // The shell is not reading: gone or wedged.
            self.kill().await;
            capture.push(&pending);
            return Outcome::ShellExited { code: None };
        }
        let mut buf = vec![0u8; 64 * 1024];
        let mut deadline = deadline;
        loop {
            match finder.find(&pending) {
                Some(i) => {
                    let after = i + finder_text.len();
                    if let Some(nl) = memchr::memchr(b'\n', &pending[after..]) {
                        let code = std::str::from_utf8(&pending[after..after + nl])
                            .ok()
                            .and_then(|s| s.trim().parse::<i32>().ok())
                            .unwrap_or(-1);
                        capture.push(&pending[..i]);
                        self.leftover = pending[after + nl + 1..].to_vec();
                        return if timed_out {
                            Outcome::TimedOut { code: Some(code) }
                        } else {
                            Outcome::Done(code)
                        };
                    }
                }
                None => {
                    let keep = (finder_text.len() - 1).min(pending.len());
                    let commit = pending.len() - keep;
                    capture.push(&pending[..commit]);
                    pending.drain(..commit);
                }
            }
            match timeout_at(deadline, self.out.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    capture.push(&pending);
                    let code = self.wait_exit().await;
                    return if timed_out {
                        Outcome::TimedOut { code: None }
                    } else {
                        Outcome::ShellExited { code }
                    };
                }
                Ok(Ok(n)) => pending.extend_from_slice(&buf[..n]),
                Err(_) => {
                    timed_out = true;
                    let (shell, bridge) = (self.shell, self.bridge);
                    match phase {
                        0 => {
                            procs::kill_tree(self.init.pid, |p| *p == shell || before.contains(p));
                        }
                        1 => {
                            procs::kill_tree(self.init.pid, |p| *p == shell || Some(*p) == bridge);
                        }
                        _ => {
                            capture.push(&pending);
                            self.kill().await;
                            return Outcome::TimedOut { code: None };
                        }
                    }
                    phase += 1;
                    deadline = Instant::now() + GRACE;
                }
            }
        }
    }

    /// Sends `script` and reads to the sentinel printed after it (start-up handshake).
    async fn exchange(&mut self, script: &str, limit: Duration) -> Exchange {
        let tag = ulid::Ulid::new().to_string();
        let full = format!("{script}builtin printf '\\n__OPENMA_%s__ %d\\n' {tag} \"$?\"\n");
        let marker = format!("\n__OPENMA_{tag}__ ");
        let deadline = Instant::now() + limit;
        let mut output = Vec::new();
        if timeout_at(deadline, self.stdin.write_all(full.as_bytes()))
            .await
            .map(|r| r.is_err())
            .unwrap_or(true)
        {
            return Exchange::Eof { output };
        }
        let mut buf = vec![0u8; 4096];
        loop {
            if let Some(i) = memmem::find(&output, marker.as_bytes()) {
                let after = i + marker.len();
                if let Some(nl) = memchr::memchr(b'\n', &output[after..]) {
                    let code = std::str::from_utf8(&output[after..after + nl])
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(-1);
                    self.leftover = output[after + nl + 1..].to_vec();
                    output.truncate(i);
                    return Exchange::Sentinel { output, code };
                }
            }
            match timeout_at(deadline, self.out.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Exchange::Eof { output },
                Ok(Ok(n)) => output.extend_from_slice(&buf[..n]),
                Err(_) => return Exchange::TimedOut { _output: output },
            }
        }
    }

    async fn wait_exit(&mut self) -> Option<i32> {
        match timeout(Duration::from_secs(5), self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => {
                self.kill().await;
                None
            }
        }
    }

    /// Kills the whole sandbox: bwrap's pid 1 (the kernel then kills everything in its pid
    /// namespace) and the outer bwrap; waits for them.
    pub async fn kill(&mut self) {
        // bwrap exits (after reaping it) once its pid 1 is gone, and pid 1 is gone only once
        // every process of its namespace is: waiting for bwrap leaves nothing behind.
        if self.init.pid != 0
            && procs::signal(self.init, rustix::process::Signal::KILL)
            && timeout(Duration::from_secs(2), self.child.wait())
                .await
                .is_ok()
        {
            return;
        }
        let _ = self.child.start_kill();
        let _ = timeout(Duration::from_secs(5), self.child.wait()).await;
    }

    /// Host pids of the sandbox's own processes (outer bwrap, its pid 1, bash).
    pub fn pids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.child.id().into_iter().collect();
        v.extend(
            [self.init.pid, self.shell.pid]
                .into_iter()
                .filter(|p| *p != 0),
        );
        v
    }
}

impl Drop for Shell {
    /// A shell dropped without `kill` (its `Sandboxes` went away): end its namespace now
    /// rather than when bubblewrap's parent-death signal gets there.
    fn drop(&mut self) {
        if self.init.pid != 0 {
            procs::signal(self.init, rustix::process::Signal::KILL);
        }
    }
}

enum Exchange {
    Sentinel { output: Vec<u8>, code: i32 },
    Eof { output: Vec<u8> },
    TimedOut { _output: Vec<u8> },
}
