//! `web_fetch.url_sources`: with a rule set, `web_fetch` fetches only a URL that appeared
//! in a part of the conversation the rules let contribute URLs — the text of user messages
//! (`user_input`), results of custom tools (`client_tool_results`), results of `web_search`
//! and `web_fetch` (`server_tool_results`) — so that a URL the model made up, or one planted
//! in content the rules exclude, is not fetched. Without a rule set any URL may be fetched
//! (the domain lists and the public-address guard still apply).

use std::collections::BTreeMap;

use openma_types::events::EventPayload;
use serde_json::Value;

use crate::ports::StoredEvent;

/// Whether a source kind contributes, and for tool results which tools.
enum Rule<'a> {
    All,
    None,
    Only(Vec<&'a str>),
    Except(Vec<&'a str>),
}

impl Rule<'_> {
    fn parse(v: Option<&Value>) -> Rule<'_> {
        let Some(v) = v.filter(|v| !v.is_null()) else { return Rule::All };
        let names = || -> Vec<&str> {
            v.get("tools").and_then(Value::as_array).into_iter().flatten().filter_map(|t| t.get("name").and_then(Value::as_str)).collect()
        };
        match v.get("type").and_then(Value::as_str) {
            Some("none") => Rule::None,
            Some("only") => Rule::Only(names()),
            Some("except") => Rule::Except(names()),
            _ => Rule::All,
        }
    }

    fn admits(&self, tool: &str) -> bool {
        match self {
            Rule::All => true,
            Rule::None => false,
            Rule::Only(names) => names.contains(&tool),
            Rule::Except(names) => !names.contains(&tool),
        }
    }
}

fn texts(content: &[Value]) -> impl Iterator<Item = &str> {
    content.iter().filter_map(|b| b.get("text").and_then(Value::as_str))
}

/// The texts that may contribute URLs under `rules` (the object form of `url_sources`).
pub fn contributing_texts<'a>(rules: &Value, log: &'a [StoredEvent]) -> Vec<&'a str> {
    let user = Rule::parse(rules.get("user_input"));
    let client = Rule::parse(rules.get("client_tool_results"));
    let server = Rule::parse(rules.get("server_tool_results"));
    let mut tool_names: BTreeMap<&str, &str> = BTreeMap::new();
    let mut out = Vec::new();
    for e in log {
        match &e.event.payload {
            EventPayload::AgentToolUse { name, .. } | EventPayload::AgentCustomToolUse { name, .. } => {
                tool_names.insert(&e.event.id, name);
            }
            EventPayload::UserMessage { content } if user.admits("") => out.extend(texts(content)),
            EventPayload::UserCustomToolResult { custom_tool_use_id, content, .. }
                if tool_names.get(custom_tool_use_id.as_str()).is_some_and(|n| client.admits(n)) =>
            {
                out.extend(texts(content));
            }
            EventPayload::AgentToolResult { tool_use_id, content, is_error: false } => {
                let name = tool_names.get(tool_use_id.as_str()).copied().unwrap_or_default();
                if matches!(name, "web_search" | "web_fetch") && server.admits(name) {
                    out.extend(texts(content));
                }
            }
            _ => {}
        }
    }
    out
}

/// `Ok` when a tool call may go ahead: anything but a `web_fetch` whose tool config has
/// `url_sources` does; that one only for a URL its rules let through. Both runtimes ask.
pub fn check_call(name: &str, config: Option<&openma_types::agents::BuiltinToolConfig>, input: &Value, log: &[StoredEvent]) -> Result<(), String> {
    let Some(rules) = config.and_then(|c| c.url_sources.as_ref()).filter(|_| name == "web_fetch") else { return Ok(()) };
    check(rules, log, input.get("url").and_then(Value::as_str).unwrap_or_default())
}

/// `Ok` when `url` may be fetched under `rules`; otherwise why not.
pub fn check(rules: &Value, log: &[StoredEvent], url: &str) -> Result<(), String> {
    let wanted = url.split('#').next().unwrap_or(url);
    let bare = wanted.trim_end_matches('/');
    if bare.is_empty() {
        return Err("an empty URL".into());
    }
    if contributing_texts(rules, log).iter().any(|t| t.contains(bare)) {
        return Ok(());
    }
    Err(format!(
        "`{url}` did not appear in any part of the conversation that this agent's `web_fetch.url_sources` lets contribute URLs; fetch only URLs given by the user or found by the permitted tools"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(seq: i64, payload: EventPayload) -> StoredEvent {
        StoredEvent { seq, event: openma_types::events::SessionEvent { id: format!("sevt_{seq}"), payload, processed_at: None }, internal: None }
    }

    fn text(t: &str) -> Vec<Value> {
        vec![json!({"type": "text", "text": t})]
    }

    fn log() -> Vec<StoredEvent> {
        vec![
            ev(1, EventPayload::UserMessage { content: text("read https://user.example/page please") }),
            ev(2, EventPayload::AgentCustomToolUse { name: "lookup".into(), input: json!({}) }),
            ev(3, EventPayload::UserCustomToolResult { custom_tool_use_id: "sevt_2".into(), content: text("see https://client.example/doc"), is_error: false }),
            ev(4, EventPayload::AgentToolUse { name: "web_search".into(), input: json!({}), evaluated_permission: openma_types::events::EvaluatedPermission::Allow, evaluation: openma_types::agents::PermissionPolicy::AlwaysAllow }),
            ev(5, EventPayload::AgentToolResult { tool_use_id: "sevt_4".into(), content: text("1. https://search.example/result"), is_error: false }),
            ev(6, EventPayload::AgentToolUse { name: "bash".into(), input: json!({}), evaluated_permission: openma_types::events::EvaluatedPermission::Allow, evaluation: openma_types::agents::PermissionPolicy::AlwaysAllow }),
            ev(7, EventPayload::AgentToolResult { tool_use_id: "sevt_6".into(), content: text("https://bash.example/planted"), is_error: false }),
        ]
    }

    #[test]
    fn urls_must_come_from_the_permitted_sources() {
        let log = log();
        let all = json!({});
        for url in ["https://user.example/page", "https://client.example/doc#part", "https://search.example/result/"] {
            assert!(check(&all, &log, url).is_ok(), "{url}");
        }
        // made up by the model, or planted in a result that is not a permitted source
        assert!(check(&all, &log, "https://invented.example/").is_err());
        assert!(check(&all, &log, "https://bash.example/planted").is_err());

        let no_user = json!({"user_input": {"type": "none"}});
        assert!(check(&no_user, &log, "https://user.example/page").is_err());
        assert!(check(&no_user, &log, "https://search.example/result").is_ok());

        let only_fetch = json!({"server_tool_results": {"type": "only", "tools": [{"type": "tool_reference", "name": "web_fetch"}]},
            "client_tool_results": {"type": "except", "tools": [{"type": "tool_reference", "name": "lookup"}]}});
        assert!(check(&only_fetch, &log, "https://search.example/result").is_err());
        assert!(check(&only_fetch, &log, "https://client.example/doc").is_err());
        assert!(check(&only_fetch, &log, "https://user.example/page").is_ok());
    }
}
