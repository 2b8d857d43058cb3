//! [`ModelRequest`] (Anthropic-shaped) → OpenAI Chat Completions request body.
//!
//! The shapes differ in three ways that matter: tool results are separate `tool`
//! messages rather than blocks of a user message, tool calls are a field of the assistant
//! message with their input as a JSON *string*, and images are data URLs. Thinking blocks
//! have no Chat Completions form and are dropped.

use openma_core::model::{ContentBlock, Message, ModelRequest, Role, ToolSpec};
use serde_json::{Value, json};

pub(crate) fn body(request: &ModelRequest, model: &str) -> Value {
    let mut body = json!({
        "model": model,
        "messages": messages(request),
        "stream": true,
        // Without this the stream carries no token counts at all.
        "stream_options": {"include_usage": true},
        "max_tokens": request.max_tokens,
    });
    // OpenAI rejects an empty `tools` array.
    if !request.tools.is_empty() {
        body["tools"] = request.tools.iter().map(tool).collect();
    }
    body
}

fn tool(spec: &ToolSpec) -> Value {
    json!({
        "type": "function",
        "function": {"name": spec.name, "description": spec.description, "parameters": spec.input_schema},
    })
}

fn messages(request: &ModelRequest) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
        out.push(json!({"role": "system", "content": system}));
    }
    for message in &request.messages {
        match message.role {
            Role::User => user(message, &mut out),
            Role::Assistant => assistant(message, &mut out),
        }
    }
    out
}

/// Tool results first (OpenAI wants them right after the assistant's tool calls), one
/// `tool` message each; then the rest of the user's content as one user message. Images
/// returned by tools cannot go in a `tool` message, so they join that user message.
fn user(message: &Message, out: &mut Vec<Value>) {
    let mut parts = Vec::new();
    let mut tool_images = Vec::new();
    for block in &message.content {
        match block {
            ContentBlock::ToolResult { tool_use_id, content, is_error } => {
                let mut text = String::new();
                for inner in content {
                    match inner {
                        ContentBlock::Text { text: t } => {
                            if !text.is_empty() {
                                text.push('\n');
                            }
                            text.push_str(t);
                        }
                        other => tool_images.extend(part(other)),
                    }
                }
                // Chat Completions has no error flag; say it in the text.
                if *is_error {
                    text = if text.is_empty() { "Error".to_owned() } else { format!("Error: {text}") };
                }
                out.push(json!({"role": "tool", "tool_call_id": tool_use_id, "content": text}));
            }
            other => parts.extend(part(other)),
        }
    }
    parts.splice(0..0, tool_images);
    match parts.as_slice() {
        [] => {}
        // A lone text part as a plain string: every OpenAI-compatible server reads that.
        [only] if only["type"] == "text" => out.push(json!({"role": "user", "content": only["text"]})),
        _ => out.push(json!({"role": "user", "content": parts})),
    }
}

fn assistant(message: &Message, out: &mut Vec<Value>) {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in &message.content {
        match block {
            ContentBlock::Text { text: t } => text.push_str(t),
            ContentBlock::ToolUse { id, name, input } => tool_calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": input.to_string()},
            })),
            _ => {}
        }
    }
    if text.is_empty() && tool_calls.is_empty() {
        return; // Only thinking: nothing OpenAI can read.
    }
    let mut msg = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
    if !tool_calls.is_empty() {
        msg["tool_calls"] = Value::Array(tool_calls);
    }
    out.push(msg);
}

/// The user content parts of one block: none for blocks OpenAI cannot take, two for a PDF
/// with a title or context (Chat Completions `file` parts have neither, so a text part
/// leads it).
fn part(block: &ContentBlock) -> Vec<Value> {
    let text = |t: String| json!({"type": "text", "text": t});
    match block {
        ContentBlock::Text { text: t } => vec![text(t.clone())],
        ContentBlock::Image { source } => {
            let url = match (source["type"].as_str(), source["url"].as_str()) {
                (Some("base64"), _) => data_url(source),
                (Some("url"), Some(url)) => url.to_owned(),
                _ => return Vec::new(),
            };
            vec![json!({"type": "image_url", "image_url": {"url": url}})]
        }
        ContentBlock::Document { source, title, context } => {
            let heading: String = [title.as_deref().map(|t| format!("Document: {t}")), context.clone()]
                .into_iter()
                .flatten()
                .map(|line| format!("{line}\n"))
                .collect();
            match (source["type"].as_str(), source["url"].as_str()) {
                (Some("text"), _) => vec![text(format!("{heading}{}", source["data"].as_str().unwrap_or_default()))],
                // PDFs as Chat Completions `file` parts with a data URL, the form OpenAI reads.
                (Some("base64"), _) => {
                    let file = json!({"type": "file", "file": {"filename": pdf_filename(title.as_deref()), "file_data": data_url(source)}});
                    if heading.is_empty() { vec![file] } else { vec![text(heading.trim_end().to_owned()), file] }
                }
                (Some("url"), Some(url)) => vec![text(format!("{heading}Document: {url}"))],
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

/// The title as a file name when it is one, else `document.pdf`.
fn pdf_filename(title: Option<&str>) -> String {
    match title.map(str::trim).filter(|t| !t.is_empty() && !t.contains(['/', '\\'])) {
        Some(t) if t.to_ascii_lowercase().ends_with(".pdf") => t.to_owned(),
        Some(t) => format!("{t}.pdf"),
        None => "document.pdf".to_owned(),
    }
}

fn data_url(source: &Value) -> String {
    let media_type = source["media_type"].as_str().unwrap_or("application/octet-stream");
    let data = source["data"].as_str().unwrap_or_default();
    format!("data:{media_type};base64,{data}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> ContentBlock {
        ContentBlock::Text { text: t.into() }
    }

    #[test]
    fn translates_a_tool_round_trip() {
        let request = ModelRequest {
            model: "gpt-x".into(),
            system: Some("sys".into()),
            messages: vec![
                Message {
                    role: Role::User,
                    content: vec![
                        text("look"),
                        ContentBlock::Image {
                            source: json!({"type": "base64", "media_type": "image/png", "data": "AAAA"}),
                        },
                        ContentBlock::Image { source: json!({"type": "url", "url": "https://x/y.png"}) },
                    ],
                },
                Message {
                    role: Role::Assistant,
                    content: vec![
                        ContentBlock::Thinking { thinking: "hm".into(), signature: Some("s".into()) },
                        text("checking"),
                        ContentBlock::ToolUse { id: "c1".into(), name: "a".into(), input: json!({"x": 1}) },
                        ContentBlock::ToolUse { id: "c2".into(), name: "b".into(), input: json!({}) },
                    ],
                },
                Message {
                    role: Role::User,
                    content: vec![
                        ContentBlock::ToolResult {
                            tool_use_id: "c1".into(),
                            content: vec![text("one")],
                            is_error: false,
                        },
                        ContentBlock::ToolResult {
                            tool_use_id: "c2".into(),
                            content: vec![text("boom")],
                            is_error: true,
                        },
                        text("and?"),
                    ],
                },
            ],
            tools: vec![ToolSpec {
                name: "a".into(),
                description: "A".into(),
                input_schema: json!({"type": "object"}),
            }],
            max_tokens: 50,
            cache: true,
        };
        let body = body(&request, "gpt-x");
        assert_eq!(
            body,
            json!({
                "model": "gpt-x",
                "stream": true,
                "stream_options": {"include_usage": true},
                "max_tokens": 50,
                "tools": [{"type": "function", "function": {"name": "a", "description": "A", "parameters": {"type": "object"}}}],
                "messages": [
                    {"role": "system", "content": "sys"},
                    {"role": "user", "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                    ]},
                    {"role": "assistant", "content": "checking", "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{\"x\":1}"}},
                        {"id": "c2", "type": "function", "function": {"name": "b", "arguments": "{}"}},
                    ]},
                    {"role": "tool", "tool_call_id": "c1", "content": "one"},
                    {"role": "tool", "tool_call_id": "c2", "content": "Error: boom"},
                    {"role": "user", "content": "and?"},
                ],
            })
        );
    }

    #[test]
    fn documents_become_text_and_file_parts() {
        let doc = |source: Value, title: Option<&str>, context: Option<&str>| ContentBlock::Document {
            source,
            title: title.map(str::to_owned),
            context: context.map(str::to_owned),
        };
        let pdf = json!({"type": "base64", "media_type": "application/pdf", "data": "JVBERg=="});
        let request = ModelRequest {
            model: "m".into(),
            system: None,
            messages: vec![Message {
                role: Role::User,
                content: vec![
                    doc(json!({"type": "text", "media_type": "text/plain", "data": "a,b"}), Some("data.csv"), None),
                    doc(pdf.clone(), None, None),
                    doc(pdf, Some("Q3 report"), Some("the board's copy")),
                ],
            }],
            tools: vec![],
            max_tokens: 1,
            cache: false,
        };
        let file = |name: &str| json!({"type": "file", "file": {"filename": name, "file_data": "data:application/pdf;base64,JVBERg=="}});
        assert_eq!(
            body(&request, "m")["messages"][0]["content"],
            json!([
                {"type": "text", "text": "Document: data.csv\na,b"},
                file("document.pdf"),
                {"type": "text", "text": "Document: Q3 report\nthe board's copy"},
                file("Q3 report.pdf"),
            ])
        );
    }

    #[test]
    fn no_tools_no_system_and_tool_only_assistant() {
        let request = ModelRequest {
            model: "m".into(),
            system: None,
            messages: vec![Message {
                role: Role::Assistant,
                content: vec![ContentBlock::ToolUse { id: "c".into(), name: "n".into(), input: json!({}) }],
            }],
            tools: vec![],
            max_tokens: 1,
            cache: false,
        };
        let body = body(&request, "m");
        assert!(body.get("tools").is_none());
        assert_eq!(body["messages"][0]["content"], Value::Null);
        assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    }
}
