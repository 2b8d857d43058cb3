//! What a turn says back to its provider thread, from the session's events.

use serde_json::Value;

use crate::harness::input::Input;

/// The agent's messages since the last user event, and the tool calls waiting for a
/// confirmation.
#[derive(Debug, Default, PartialEq)]
pub struct TurnSummary {
    pub text: String,
    pub asks: Vec<Ask>,
}

#[derive(Debug, PartialEq)]
pub struct Ask {
    pub id: String,
    pub name: String,
    pub input: String,
}

impl TurnSummary {
    /// The current turn of a log (oldest first, wire JSON).
    pub fn of(events: &[Value]) -> TurnSummary {
        let start = events.iter().rposition(|e| e["type"].as_str().is_some_and(|t| t.starts_with("user."))).map(|i| i + 1).unwrap_or(0);
        let turn = &events[start..];
        let mut out = TurnSummary::default();
        let mut texts = Vec::new();
        for e in turn {
            match e["type"].as_str() {
                Some("agent.message") => texts.push(message_text(e)),
                Some("agent.tool_use" | "agent.mcp_tool_use") if e["evaluated_permission"] == "ask" => {
                    let id = e["id"].as_str().unwrap_or_default();
                    let answered = turn.iter().any(|r| r["tool_use_id"] == id || r["mcp_tool_use_id"] == id);
                    if !answered {
                        out.asks.push(Ask { id: id.to_owned(), name: e["name"].as_str().unwrap_or("a tool").to_owned(), input: e["input"].to_string() });
                    }
                }
                _ => {}
            }
        }
        out.text = texts.join("\n\n");
        out
    }

    /// The asks as a short text (`name`: input), one per line.
    pub fn asks_text(&self) -> String {
        self.asks.iter().map(|a| format!("`{}`: `{}`", a.name, truncate(&a.input, 500))).collect::<Vec<_>>().join("\n")
    }

    /// The inputs that allow or deny every tool call the turn waits on, `who` answering.
    pub fn confirmations(&self, allow: bool, who: &str) -> Vec<Input> {
        self.asks
            .iter()
            .map(|a| Input::Confirmation { tool_use_id: a.id.clone(), allow, deny_message: (!allow).then(|| denied_by(who)) })
            .collect()
    }
}

/// What a denial tells the model: who denied the call.
pub fn denied_by(who: &str) -> String {
    format!("Denied by {who}.")
}

/// The text blocks of an `agent.message`, joined.
pub fn message_text(event: &Value) -> String {
    event["content"].as_array().into_iter().flatten().filter_map(|b| b["text"].as_str()).collect::<Vec<_>>().join("")
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max).collect();
    t.push('…');
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_turn_says_its_messages_and_its_open_confirmations() {
        let events = vec![
            json!({"type": "agent.message", "content": [{"type": "text", "text": "old"}]}),
            json!({"type": "user.message", "content": []}),
            json!({"type": "agent.message", "content": [{"type": "text", "text": "Let me look."}]}),
            json!({"type": "agent.tool_use", "id": "t1", "name": "bash", "input": {"command": "ls"}, "evaluated_permission": "allow"}),
            json!({"type": "agent.tool_result", "tool_use_id": "t1"}),
            json!({"type": "agent.tool_use", "id": "t2", "name": "bash", "input": {"command": "rm x"}, "evaluated_permission": "ask"}),
        ];
        let s = TurnSummary::of(&events);
        assert_eq!(s.text, "Let me look.");
        assert_eq!(s.asks, vec![Ask { id: "t2".into(), name: "bash".into(), input: r#"{"command":"rm x"}"#.into() }]);
        assert_eq!(s.confirmations(false, "x").len(), 1);
        assert_eq!(TurnSummary::of(&[json!({"type": "user.tool_confirmation", "tool_use_id": "t2"})]), TurnSummary::default());
    }
}
