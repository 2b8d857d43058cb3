//! The built-in tools (`bash`, `read`, `write`, `edit`, `glob`, `grep`) as openma-core
//! `Tool`s: input parsing (a bad input is an error result, never a panic) and the bash
//! tool's shell lifecycle (lazy start, restart, reporting a lost shell).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use openma_core::harness::tools::{Tool, ToolContext, ToolOutput};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::fs_tools;
use crate::output::{Capture, SpillTarget};
use crate::paths::Workspace;
use crate::shell::{Outcome, Shell};
use crate::{Inner, Sandboxes, SessionBox};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bash,
    Read,
    Write,
    Edit,
    Glob,
    Grep,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Bash => "bash",
            Kind::Read => "read",
            Kind::Write => "write",
            Kind::Edit => "edit",
            Kind::Glob => "glob",
            Kind::Grep => "grep",
        }
    }
}

struct SandboxTool {
    inner: Arc<Inner>,
    kind: Kind,
}

impl Sandboxes {
    /// The six sandbox tools, by the names the model calls them.
    pub fn tools(&self) -> Vec<(&'static str, Arc<dyn Tool>)> {
        [
            Kind::Bash,
            Kind::Read,
            Kind::Write,
            Kind::Edit,
            Kind::Glob,
            Kind::Grep,
        ]
        .into_iter()
        .map(|kind| {
            (
                kind.name(),
                Arc::new(SandboxTool {
                    inner: self.inner.clone(),
                    kind,
                }) as Arc<dyn Tool>,
            )
        })
        .collect()
    }
}

fn parse<T: DeserializeOwned>(tool: &str, input: Value) -> Result<T, ToolOutput> {
    let input = if input.is_null() {
        Value::Object(Default::default())
    } else {
        input
    };
    serde_json::from_value(input)
        .map_err(|e| ToolOutput::error(format!("Invalid input for the {tool} tool: {e}")))
}

#[async_trait]
impl Tool for SandboxTool {
    fn read_only(&self) -> bool {
        matches!(self.kind, Kind::Read | Kind::Glob | Kind::Grep)
    }

    async fn run(&self, ctx: &ToolContext, input: Value) -> ToolOutput {
        let session = match self.inner.session(&ctx.session_id) {
            Ok(s) => s,
            Err(e) => return ToolOutput::error(e),
        };
        let out = match self.kind {
            Kind::Bash => match parse::<BashInput>("bash", input) {
                Ok(i) => bash(&self.inner, &session, i).await,
                Err(e) => e,
            },
            kind => {
                let limit = self.inner.config.limits.output_chars;
                let paths = session.paths.clone();
                let uid = session.uid;
                let task = tokio::task::spawn_blocking(move || {
                    let ws = match open_workspace(&paths, uid) {
                        Ok(ws) => ws,
                        Err(e) => return ToolOutput::error(e),
                    };
                    match kind {
                        Kind::Read => parse("read", input)
                            .map_or_else(|e| e, |i| fs_tools::read(&ws, i, limit)),
                        Kind::Write => {
                            parse("write", input).map_or_else(|e| e, |i| fs_tools::write(&ws, i))
                        }
                        Kind::Edit => {
                            parse("edit", input).map_or_else(|e| e, |i| fs_tools::edit(&ws, i))
                        }
                        Kind::Glob => parse("glob", input)
                            .map_or_else(|e| e, |i| fs_tools::glob(&ws, i, limit)),
                        Kind::Grep => parse("grep", input)
                            .map_or_else(|e| e, |i| fs_tools::grep(&ws, i, limit)),
                        Kind::Bash => ToolOutput::error("internal error: bash is not a file tool"),
                    }
                });
                task.await.unwrap_or_else(|e| {
                    ToolOutput::error(format!("the {} tool failed: {e}", kind.name()))
                })
            }
        };
        non_empty(out)
    }
}

/// The session's workspace as the file tools see it: `/workspace`, the session mounts,
/// its memory stores and skills.
pub(crate) fn open_workspace(paths: &crate::bwrap::SessionPaths, uid: Option<u32>) -> Result<Workspace, String> {
    let extra: Vec<(String, std::path::PathBuf, bool)> = crate::mounts::memory_mounts(paths)
        .into_iter()
        .map(|m| (format!("/mnt/memory/{}", m.slug), paths.memory.join(&m.slug), m.writable))
        .chain(std::iter::once((crate::paths::SKILLS.to_string(), paths.skills.clone(), false)))
        .collect();
    Workspace::open_session(&paths.workspace, &paths.uploads, &paths.outputs, &extra, uid)
        .map_err(|e| format!("the workspace cannot be opened: {e}"))
}

/// The Messages API refuses empty text blocks.
fn non_empty(mut out: ToolOutput) -> ToolOutput {
    for block in &mut out.content {
        if block.get("type").and_then(Value::as_str) == Some("text")
            && block
                .get("text")
                .and_then(Value::as_str)
                .is_some_and(str::is_empty)
        {
            block["text"] = Value::String("(no output)".into());
        }
    }
    if out.content.is_empty() {
        out.content
            .push(serde_json::json!({"type": "text", "text": "(no output)"}));
    }
    out
}

#[derive(Deserialize)]
struct BashInput {
    command: Option<String>,
    restart: Option<bool>,
    timeout_ms: Option<i64>,
}

fn seconds(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

const SERVER_RESTARTED: &str = "the previous one ended when the server restarted";

/// A bash call whose future is dropped mid-command (the session was interrupted) leaves a
/// command running and its output unread in the shell: end the sandbox at once, and say so
/// with the next command.
struct InterruptGuard<'a> {
    session: &'a SessionBox,
    init: crate::procs::ProcId,
    armed: bool,
}

impl Drop for InterruptGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            crate::procs::signal(self.init, rustix::process::Signal::KILL);
            self.session
                .interrupted
                .store(true, std::sync::atomic::Ordering::SeqCst);
            self.session
                .shell_lost("the previous command was interrupted, which ends its shell");
        }
    }
}

const RESET: &str = "its working directory and environment variables are reset";

/// The egress proxy and bridge of a session with networking; None without.
fn sandbox_net(inner: &Inner, session: &SessionBox) -> Result<Option<crate::network::SandboxNet>, String> {
    if !session.egress.read().unwrap_or_else(|e| e.into_inner()).has_network() {
        return Ok(None);
    }
    let session_id = session.paths.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let settings = &inner.config.egress;
    let policy = session.egress.clone();
    let proxy = crate::network::proxy::EgressProxy::start(&session.paths.egress, session.uid, &session_id, policy, settings)
        .map_err(|e| format!("cannot start the egress proxy: {e}"))?;
    let ca_bundle = match &settings.ca {
        Some(ca) => {
            let mut bundle = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
            if !bundle.is_empty() && !bundle.ends_with('\n') {
                bundle.push('\n');
            }
            bundle.push_str(ca.cert_pem());
            let path = session.paths.etc.join("openma-ca-bundle.pem");
            std::fs::create_dir_all(&session.paths.etc).and_then(|_| std::fs::write(&path, bundle)).map_err(|e| format!("cannot write the sandbox's CA bundle: {e}"))?;
            Some(path)
        }
        None => None,
    };
    Ok(Some(crate::network::SandboxNet { proxy, bridge: settings.bridge.clone(), socket_dir: session.paths.egress.clone(), ca_bundle }))
}

/// Starts the session's shell (and with it the sandbox) unless it is running. `Ok(Some)`
/// carries why an earlier shell is gone, for the next command's result.
pub(crate) async fn ensure_shell(
    inner: &Inner,
    session: &SessionBox,
    slot: &mut Option<Shell>,
    limits: &crate::Limits,
    environment: &crate::SessionEnvironment,
) -> Result<Option<String>, String> {
    if let Some(shell) = slot.as_mut()
        && !shell.alive()
    {
        shell.kill().await;
        *slot = None;
        session.set_running(None);
        // Keep a more precise reason (an interrupted command) if one was recorded.
        if session.lost_reason().is_none_or(|r| r == SERVER_RESTARTED) {
            session.shell_lost("the previous one had exited");
        }
    }
    if slot.is_some() {
        // a shell another caller started (a stdio MCP server) leaves its note for bash
        return Ok(session.started_note.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
    let layer = if environment.packages.is_empty() {
        None
    } else {
        Some(inner.layers.wait_ready(&environment.packages, inner.config.layer_wait).await?)
    };
    let reason = session.take_lost_reason();
    let net = sandbox_net(inner, session).map_err(|e| format!("the sandbox's network could not be set up: {e}"))?;
    let shell = Shell::start(&inner.config.root, &session.paths, session.uid, limits, net, layer.as_deref()).await?;
    session.set_running(Some(&shell));
    *slot = Some(shell);
    // Should this process die, the next one knows why the shell is new.
    session.shell_lost(SERVER_RESTARTED);
    Ok(reason)
}

async fn bash(inner: &Inner, session: &SessionBox, input: BashInput) -> ToolOutput {
    let environment = crate::SessionEnvironment::of(&session.paths);
    let limits = &inner.config.limits.lowered_by(&environment.limits);
    let limit = match input.timeout_ms {
        Some(ms) if ms > 0 => Duration::from_millis(ms as u64).min(limits.max_timeout),
        _ => limits.default_timeout,
    };
    let command = input.command.filter(|c| !c.trim().is_empty());
    let restart = input.restart == Some(true);
    if command.is_none() && !restart {
        return ToolOutput::error(
            "Invalid input for the bash tool: `command` is required (or `restart: true`).",
        );
    }
    let mut slot = session.shell.lock().await;
    session.touch();
    let mut notes: Vec<String> = Vec::new();
    if restart && let Some(mut shell) = slot.take() {
        shell.kill().await;
        session.set_running(None);
    }
    if session
        .interrupted
        .swap(false, std::sync::atomic::Ordering::SeqCst)
        && let Some(mut shell) = slot.take()
    {
        shell.kill().await;
        session.set_running(None);
    }
    match ensure_shell(inner, session, &mut slot, limits, &environment).await {
        Err(e) => return ToolOutput::error(format!("The sandbox could not be started: {e}")),
        Ok(_) if restart => notes.push(format!("The shell was restarted; {RESET}.")),
        Ok(Some(reason)) => notes.push(format!("A new shell was started because {reason}; {RESET}.")),
        Ok(None) => {}
    }
    let Some(command) = command else {
        return ToolOutput::text(notes.join("\n"));
    };
    let Some(shell) = slot.as_mut() else {
        return ToolOutput::error("internal error: no shell");
    };
    let target = SpillTarget {
        workspace: session.paths.workspace.clone(),
        uid: session.uid,
    };
    let mut capture = Capture::new(limits.output_chars, limits.file_size_bytes, target);
    let mut guard = InterruptGuard {
        session,
        init: shell.init,
        armed: true,
    };
    let (cpu_before, started) = (crate::procs::tree_cpu_ms(shell.init.pid), std::time::Instant::now());
    let outcome = shell.run(&command, limit, &mut capture).await;
    let usage = openma_core::harness::tools::SandboxUsage {
        wall_ms: started.elapsed().as_millis() as u64,
        cpu_ms: crate::procs::tree_cpu_ms(shell.init.pid).saturating_sub(cpu_before),
    };
    guard.armed = false;
    session.touch();
    let captured = capture.finish();
    let mut text = String::new();
    for n in &notes {
        text.push_str(&format!("[{n}]\n"));
    }
    text.push_str(&captured.text);
    let mut add = |line: String| {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&line);
    };
    let mut is_error = false;
    match outcome {
        Outcome::Done(0) => {}
        Outcome::Done(code) => add(format!("Exit code: {code}")),
        Outcome::TimedOut { code: Some(_) } => {
            is_error = true;
            add(format!(
                "Command timed out after {} and was killed; the shell is still running.",
                seconds(limit)
            ));
        }
        Outcome::TimedOut { code: None } => {
            is_error = true;
            *slot = None;
            session.set_running(None);
            session.shell_lost("the previous command timed out and took its shell with it");
            add(format!(
                "Command timed out after {} and was killed, together with the shell; the next command starts a new shell ({RESET}).",
                seconds(limit)
            ));
        }
        Outcome::ShellExited { code } => {
            *slot = None;
            session.set_running(None);
            session.shell_lost("the previous one exited");
            let code = code.map(|c| format!(" with code {c}")).unwrap_or_default();
            add(format!(
                "The shell exited{code}; the next command starts a new shell ({RESET})."
            ));
        }
    }
    ToolOutput {
        content: vec![serde_json::json!({"type": "text", "text": text})],
        is_error,
        usage: Some(usage),
    }
}
