//! `openma chat` and `openma sessions tail`: a session's stream, live in the terminal.
//!
//! The stream is followed with resume: when the connection drops it is opened again with
//! `Last-Event-ID`, so nothing is missed or shown twice. `chat` prints the agent's messages,
//! its tool calls with their results and errors, shows a spinner while the model works,
//! asks before a tool call that waits for a confirmation (and for a custom tool's result),
//! and turns Ctrl-C into `user.interrupt` (a second Ctrl-C leaves).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use serde_json::{Value, json};

use crate::client::{Api, Connection, describe};

#[derive(Args)]
pub struct ChatArgs {
    /// Continue this session.
    #[arg(long, conflicts_with_all = ["agent", "environment"])]
    pub session: Option<String>,
    /// Start a new session with this agent (id or name).
    #[arg(long)]
    pub agent: Option<String>,
    /// The new session's environment (id or name).
    #[arg(long)]
    pub environment: Option<String>,
    /// The message to send; without one, messages are read from the terminal, one per line.
    pub message: Option<String>,
}

#[derive(Args)]
pub struct TailArgs {
    /// The session to follow.
    pub id: String,
}

type Events = Pin<Box<dyn Stream<Item = Result<eventsource_stream::Event, String>> + Send>>;

/// A session's stream that reconnects with `Last-Event-ID` when it drops.
struct Follow<'a> {
    api: &'a Api,
    session_id: String,
    last_id: Option<String>,
    events: Option<Events>,
}

impl<'a> Follow<'a> {
    async fn open(api: &'a Api, session_id: &str) -> anyhow::Result<Follow<'a>> {
        let mut f = Follow { api, session_id: session_id.to_owned(), last_id: None, events: None };
        f.connect().await?;
        Ok(f)
    }

    async fn connect(&mut self) -> anyhow::Result<()> {
        let mut req = self.api.http.get(format!("{}/v1/sessions/{}/events/stream", self.api.base, self.session_id)).bearer_auth(&self.api.key);
        if let Some(id) = &self.last_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await.with_context(|| format!("cannot reach {}", self.api.base))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            bail!("{} ({status})", v["error"]["message"].as_str().unwrap_or("cannot open the session's stream"));
        }
        self.events = Some(Box::pin(resp.bytes_stream().eventsource().map(|r| r.map_err(|e| e.to_string()))));
        Ok(())
    }

    /// The next event; reconnects (five tries, backing off) when the stream ends or breaks.
    async fn next(&mut self) -> anyhow::Result<Value> {
        let mut tries = 0u32;
        loop {
            let got = match self.events.as_mut() {
                Some(events) => events.next().await,
                None => None,
            };
            match got {
                Some(Ok(e)) => {
                    if !e.id.is_empty() {
                        self.last_id = Some(e.id.clone());
                    }
                    match serde_json::from_str::<Value>(&e.data) {
                        Ok(v) if v.get("type").is_some() => return Ok(v),
                        _ => continue,
                    }
                }
                Some(Err(_)) | None => {
                    tries += 1;
                    if tries > 5 {
                        bail!("the session's stream keeps dropping");
                    }
                    tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(tries - 1))).await;
                    if let Err(e) = self.connect().await {
                        self.events = None;
                        if tries == 5 {
                            return Err(e);
                        }
                    }
                }
            }
        }
    }
}

/// A spinner on stderr while the model works (only on a terminal).
struct Spinner {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Spinner {
    fn new() -> Spinner {
        Spinner { task: None }
    }

    fn start(&mut self) {
        if self.task.is_some() || !std::io::stderr().is_terminal() {
            return;
        }
        self.task = Some(tokio::spawn(async {
            const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
            for i in 0.. {
                eprint!("\r{} thinking…", FRAMES[i % FRAMES.len()]);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }

    fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            eprint!("\r\x1b[2K");
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A line from the terminal (None at end of input).
async fn read_line(prompt: String) -> Option<String> {
    tokio::task::spawn_blocking(move || {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        match std::io::stdin().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches(['\n', '\r']).to_owned()),
        }
    })
    .await
    .ok()
    .flatten()
}

/// An id, or the id of the one object of that name in `list_path`.
async fn resolve(api: &Api, list_path: &str, what: &str, id_prefix: &str, name_or_id: &str) -> anyhow::Result<String> {
    if name_or_id.starts_with(id_prefix) {
        return Ok(name_or_id.to_owned());
    }
    let list = api.call(reqwest::Method::GET, list_path, None).await?;
    let found: Vec<&str> = list["data"].as_array().into_iter().flatten().filter(|a| a["name"] == name_or_id).filter_map(|a| a["id"].as_str()).collect();
    match found.as_slice() {
        [id] => Ok((*id).to_owned()),
        [] => bail!("no {what} is named `{name_or_id}`"),
        _ => bail!("{} {what}s are named `{name_or_id}`: use an id", found.len()),
    }
}

async fn post_events(api: &Api, sid: &str, events: Value) -> anyhow::Result<()> {
    api.call(reqwest::Method::POST, &format!("/v1/sessions/{sid}/events"), Some(json!({"events": events}))).await.map(|_| ())
}

/// What ended a turn.
enum TurnEnd {
    Idle,
    Gone,
}

/// Follows one turn to its end: prints it, answers confirmations and custom tool calls on
/// the terminal, and sends an interrupt on Ctrl-C.
async fn follow_turn(c: &Connection, api: &Api, sid: &str, follow: &mut Follow<'_>) -> anyhow::Result<TurnEnd> {
    let mut out = std::io::stdout();
    let mut spinner = Spinner::new();
    let mut calls: HashMap<String, Value> = HashMap::new();
    let mut interrupted = false;
    spinner.start();
    loop {
        let e = tokio::select! {
            e = follow.next() => e?,
            _ = tokio::signal::ctrl_c() => {
                spinner.stop();
                if interrupted {
                    eprintln!("leaving; the session goes on");
                    std::process::exit(130);
                }
                interrupted = true;
                eprintln!("interrupting… (Ctrl-C again to leave)");
                post_events(api, sid, json!([{"type": "user.interrupt"}])).await?;
                continue;
            }
        };
        let kind = e["type"].as_str().unwrap_or("").to_owned();
        if c.json {
            writeln!(out, "{e}")?;
        }
        match kind.as_str() {
            "span.model_request_start" | "session.status_running" => spinner.start(),
            "agent.message" if !c.json => {
                spinner.stop();
                writeln!(out, "{}", describe(&e))?;
            }
            "agent.thinking" if !c.json => {
                spinner.stop();
                eprintln!("\x1b[2m(thinking)\x1b[0m");
            }
            "agent.tool_use" | "agent.mcp_tool_use" | "agent.custom_tool_use" => {
                spinner.stop();
                if let Some(id) = e["id"].as_str() {
                    calls.insert(id.to_owned(), e.clone());
                }
                if !c.json {
                    writeln!(out, "→ {}", describe(&e))?;
                }
            }
            "agent.tool_result" | "agent.mcp_tool_result" if !c.json => {
                spinner.stop();
                let first: String = describe(&e).lines().take(8).collect::<Vec<_>>().join("\n  ");
                writeln!(out, "  {first}")?;
            }
            "session.error" if !c.json => {
                spinner.stop();
                eprintln!("error: {}", describe(&e));
            }
            "session.status_terminated" | "session.deleted" => {
                spinner.stop();
                eprintln!("the session ended");
                return Ok(TurnEnd::Gone);
            }
            "session.status_idle" => {
                spinner.stop();
                out.flush()?;
                if e["stop_reason"]["type"] != "requires_action" {
                    if interrupted {
                        eprintln!("interrupted");
                    }
                    return Ok(TurnEnd::Idle);
                }
                let waiting: Vec<String> = e["stop_reason"]["event_ids"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect();
                let mut answers = Vec::new();
                for id in &waiting {
                    let call = calls.get(id).cloned().unwrap_or_else(|| json!({"id": id}));
                    let name = call["name"].as_str().unwrap_or("a tool");
                    if call["type"] == "agent.custom_tool_use" {
                        let Some(result) = read_line(format!("result of `{name}` {}: ", call["input"])).await else {
                            eprintln!("the session waits for the result of {id}");
                            return Ok(TurnEnd::Idle);
                        };
                        answers.push(json!({"type": "user.custom_tool_result", "custom_tool_use_id": id, "content": [{"type": "text", "text": result}]}));
                    } else {
                        let Some(answer) = read_line(format!("allow `{name}` {}? [y/N] ", call["input"])).await else {
                            eprintln!("the session waits for a confirmation of {id}");
                            return Ok(TurnEnd::Idle);
                        };
                        let allow = matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes");
                        answers.push(json!({"type": "user.tool_confirmation", "tool_use_id": id, "result": if allow { "allow" } else { "deny" }}));
                    }
                }
                post_events(api, sid, Value::Array(answers)).await?;
                spinner.start();
            }
            _ => {}
        }
        out.flush()?;
    }
}

/// `openma chat`: opens (or continues) a session and talks with it.
pub async fn chat(c: &Connection, args: &ChatArgs) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(c)?;
    let sid = match (&args.session, &args.agent) {
        (Some(s), _) => s.clone(),
        (None, Some(a)) => {
            let agent = resolve(&api, "/v1/agents?limit=100", "agent", "agent_", a).await?;
            let mut body = json!({"agent": agent});
            if let Some(env) = &args.environment {
                body["environment_id"] = json!(resolve(&api, "/v1/environments?limit=100", "environment", "env_", env).await?);
            }
            let s = api.call(Method::POST, "/v1/sessions", Some(body)).await?;
            let id = s["id"].as_str().unwrap_or_default().to_owned();
            eprintln!("session {id}");
            id
        }
        (None, None) => bail!("pass --session ID or --agent NAME_OR_ID"),
    };
    let mut follow = Follow::open(&api, &sid).await?;
    let mut first = args.message.clone();
    let interactive = first.is_none();
    loop {
        let message = match first.take() {
            Some(m) => m,
            None if interactive => match read_line("> ".into()).await {
                Some(m) if m.trim().is_empty() => continue,
                Some(m) => m,
                None => return Ok(()),
            },
            None => return Ok(()),
        };
        post_events(&api, &sid, json!([{"type": "user.message", "content": [{"type": "text", "text": message}]}])).await?;
        if let TurnEnd::Gone = follow_turn(c, &api, &sid, &mut follow).await? {
            return Ok(());
        }
        if !interactive {
            return Ok(());
        }
    }
}

/// `openma sessions tail`: prints a session's events as they come, resuming after a
/// disconnect, until the session ends (or Ctrl-C).
pub async fn tail(c: &Connection, args: &TailArgs) -> anyhow::Result<()> {
    let api = Api::new(c)?;
    let mut follow = Follow::open(&api, &args.id).await?;
    let mut out = std::io::stdout();
    loop {
        let e = tokio::select! {
            e = follow.next() => e?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        if c.json {
            writeln!(out, "{e}")?;
        } else {
            writeln!(out, "{}\t{}\t{}", e["processed_at"].as_str().unwrap_or(""), e["type"].as_str().unwrap_or(""), describe(&e))?;
        }
        out.flush()?;
        if matches!(e["type"].as_str(), Some("session.status_terminated" | "session.deleted")) {
            return Ok(());
        }
    }
}
