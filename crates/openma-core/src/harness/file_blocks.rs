//! `image` and `document` blocks whose source is `{"type": "file", "file_id": …}`.
//!
//! The event log keeps such a block exactly as the client sent it, so the log stays small
//! and a file's bytes never enter it. The blocks are checked when the event is accepted
//! ([`file_refs`], [`check_file`]), and turned into what a provider reads only when a model
//! request is built ([`resolve`]): the runtime looks the files up (and caches them), this
//! module decides what each block becomes. A file that is gone by then becomes a short
//! note, so a deleted upload does not fail the turn.

use std::collections::{BTreeSet, HashMap};

use base64::Engine;
use openma_types::files::FileMetadata;
use serde_json::{Value, json};

use super::input::Input;
use crate::error::{DomainError, DomainResult};
use crate::files::Files;
use crate::model::{ContentBlock, ModelError, ModelRequest, TransientKind};
use crate::tenancy::TenantId;

/// Largest image a `file` source may name: Anthropic's per-image limit.
pub const MAX_IMAGE_BYTES: u64 = 5 * 1024 * 1024;
/// Largest document a `file` source may name: Anthropic's request size limit.
pub const MAX_DOCUMENT_BYTES: u64 = 32 * 1024 * 1024;
/// File-sourced `document` blocks one request (a `POST …/events` or a create's
/// `initial_events`) may carry.
pub const MAX_FILE_DOCUMENTS: usize = 100;

const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];
const PDF: &str = "application/pdf";
/// `application/*` types that are text and go to the model as a text document.
const TEXT_APPLICATION_TYPES: &[&str] = &[
    "application/json",
    "application/jsonl",
    "application/x-ndjson",
    "application/xml",
    "application/yaml",
    "application/x-yaml",
    "application/toml",
    "application/javascript",
    "application/x-sh",
    "application/sql",
];

/// Which block names the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileBlockKind {
    Image,
    Document,
}

/// One `file` source in accepted input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRef {
    pub file_id: String,
    pub kind: FileBlockKind,
    /// Where it is, for error messages: `events[0].content[2]`.
    pub at: String,
}

/// Whether a file of this type is sent to the model as a text document.
pub fn is_text_type(mime: &str) -> bool {
    mime.starts_with("text/")
        || TEXT_APPLICATION_TYPES.contains(&mime)
        || (mime.starts_with("application/") && (mime.ends_with("+json") || mime.ends_with("+xml")))
}

fn file_id(source: &Value) -> Option<&str> {
    (source.get("type").and_then(Value::as_str) == Some("file")).then(|| source.get("file_id").and_then(Value::as_str)).flatten()
}

/// The `file` sources of `inputs` (user messages and custom tool results), in order;
/// `where_` names the list (`events`, `initial_events`). Refuses more than
/// [`MAX_FILE_DOCUMENTS`] file-sourced documents.
pub fn file_refs(inputs: &[Input], where_: &str) -> DomainResult<Vec<FileRef>> {
    let mut out = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let content = match input {
            Input::Message { content } | Input::CustomResult { content, .. } => content,
            _ => continue,
        };
        for (j, block) in content.iter().enumerate() {
            let kind = match block.get("type").and_then(Value::as_str) {
                Some("image") => FileBlockKind::Image,
                Some("document") => FileBlockKind::Document,
                _ => continue,
            };
            if let Some(id) = block.get("source").and_then(file_id) {
                out.push(FileRef { file_id: id.to_owned(), kind, at: format!("{where_}[{i}].content[{j}]") });
            }
        }
    }
    let documents = out.iter().filter(|r| r.kind == FileBlockKind::Document).count();
    if documents > MAX_FILE_DOCUMENTS {
        return Err(DomainError::invalid(format!(
            "at most {MAX_FILE_DOCUMENTS} `document` blocks with a `file` source per request, got {documents}"
        )));
    }
    Ok(out)
}

/// Whether the file can be carried by the block that names it: its type and size.
pub fn check_file(r: &FileRef, file: &FileMetadata) -> DomainResult<()> {
    let (id, mime, size) = (&r.file_id, file.mime_type.as_str(), file.size_bytes);
    let bad = |m: String| Err(DomainError::invalid(format!("{}: {m}", r.at)));
    let limit = match r.kind {
        FileBlockKind::Image if !IMAGE_TYPES.contains(&mime) => {
            return bad(format!("file `{id}` is `{mime}`; an `image` block takes image/jpeg, image/png, image/gif or image/webp"));
        }
        FileBlockKind::Document if mime != PDF && !is_text_type(mime) => {
            return bad(format!("file `{id}` is `{mime}`; a `document` block takes application/pdf or a text type (text/*, application/json, …)"));
        }
        FileBlockKind::Image => MAX_IMAGE_BYTES,
        FileBlockKind::Document => MAX_DOCUMENT_BYTES,
    };
    if size == 0 {
        return bad(format!("file `{id}` is empty"));
    }
    if size > limit {
        let kind = if r.kind == FileBlockKind::Image { "an image" } else { "a document" };
        return bad(format!("file `{id}` has {size} bytes; {kind} may have at most {limit}"));
    }
    Ok(())
}

/// A referenced file as the model receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolvedFile {
    /// Images and PDFs: the bytes in base64.
    Base64 { media_type: String, data: String },
    /// Text files, as UTF-8 (invalid sequences replaced).
    Text { data: String },
    /// Deleted, expired, or its bytes are gone.
    Unavailable,
}

impl ResolvedFile {
    pub fn from_bytes(media_type: &str, bytes: &[u8]) -> ResolvedFile {
        if is_text_type(media_type) {
            ResolvedFile::Text { data: String::from_utf8_lossy(bytes).into_owned() }
        } else {
            ResolvedFile::Base64 { media_type: media_type.to_owned(), data: base64::engine::general_purpose::STANDARD.encode(bytes) }
        }
    }
}

/// The ids of the files a request's blocks name (tool results included).
pub fn file_ids(request: &ModelRequest) -> BTreeSet<String> {
    fn visit(blocks: &[ContentBlock], out: &mut BTreeSet<String>) {
        for b in blocks {
            match b {
                ContentBlock::Image { source } | ContentBlock::Document { source, .. } => out.extend(file_id(source).map(str::to_owned)),
                ContentBlock::ToolResult { content, .. } => visit(content, out),
                _ => {}
            }
        }
    }
    let mut out = BTreeSet::new();
    for m in &request.messages {
        visit(&m.content, &mut out);
    }
    out
}

/// Replaces every `file` source of `request` with the file's content as the provider
/// reads it: images and PDFs as base64 sources, text files as text document sources
/// (`title` and `context` stay). A file `lookup` does not know, or knows as unavailable,
/// becomes a text note.
pub fn resolve<'a>(request: &mut ModelRequest, lookup: impl Fn(&str) -> Option<&'a ResolvedFile>) {
    fn note(id: &str) -> ContentBlock {
        ContentBlock::Text { text: format!("(file {id} is no longer available)") }
    }
    fn visit<'a>(blocks: &mut [ContentBlock], lookup: &impl Fn(&str) -> Option<&'a ResolvedFile>) {
        for b in blocks {
            let replacement = match b {
                ContentBlock::ToolResult { content, .. } => {
                    visit(content, lookup);
                    continue;
                }
                ContentBlock::Image { source } => {
                    let Some(id) = file_id(source) else { continue };
                    match lookup(id) {
                        Some(ResolvedFile::Base64 { media_type, data }) if IMAGE_TYPES.contains(&media_type.as_str()) => {
                            ContentBlock::Image { source: json!({"type": "base64", "media_type": media_type, "data": data}) }
                        }
                        _ => note(id),
                    }
                }
                ContentBlock::Document { source, title, context } => {
                    let Some(id) = file_id(source) else { continue };
                    let source = match lookup(id) {
                        Some(ResolvedFile::Base64 { media_type, data }) if media_type == PDF => {
                            json!({"type": "base64", "media_type": PDF, "data": data})
                        }
                        Some(ResolvedFile::Text { data }) => json!({"type": "text", "media_type": "text/plain", "data": data}),
                        _ => Value::Null,
                    };
                    if source.is_null() {
                        note(id)
                    } else {
                        ContentBlock::Document { source, title: title.take(), context: context.take() }
                    }
                }
                _ => continue,
            };
            *b = replacement;
        }
    }
    for m in &mut request.messages {
        visit(&mut m.content, &lookup);
    }
}


/// What a session's requests carry, by file id, read from the blob store once per session
/// (actor or Durable Object) rather than on every model step. Each step still asks the
/// store which of the named files are live (one query per hundred ids), so a file deleted
/// or expired since the last step becomes the "no longer available" note at once; only
/// the bytes are cached, and entries the conversation no longer names are dropped.
#[derive(Default)]
pub struct FileBlockCache {
    files: HashMap<String, ResolvedFile>,
}

impl FileBlockCache {
    /// Replaces the `file` sources of `request` with the files' content. A store or blob
    /// store failure is a transient model error: the step is retried like a failed call.
    pub async fn resolve(&mut self, files: &Files<'_>, tenant: &TenantId, request: &mut ModelRequest) -> Result<(), ModelError> {
        let ids: Vec<String> = file_ids(request).into_iter().collect();
        if ids.is_empty() {
            self.files.clear();
            return Ok(());
        }
        let live = files.live_files(tenant, &ids).await.map_err(unreadable)?;
        self.files.retain(|id, _| live.iter().any(|f| &f.meta.id == id));
        for file in &live {
            if !self.files.contains_key(&file.meta.id) {
                let content = files.file_for_model(file).await.map_err(unreadable)?;
                self.files.insert(file.meta.id.clone(), content);
            }
        }
        resolve(request, |id| self.files.get(id));
        Ok(())
    }
}

fn unreadable(e: DomainError) -> ModelError {
    ModelError::Transient { kind: TransientKind::ServerError, message: format!("a file the conversation names could not be read: {e}"), retry_after: None }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::model::{Message, Role};

    fn meta(mime: &str, size: u64) -> FileMetadata {
        serde_json::from_value(json!({
            "id": "file_1", "type": "file", "filename": "f", "mime_type": mime, "size_bytes": size,
            "created_at": "2026-01-01T00:00:00Z", "downloadable": true, "expires_at": null, "scope": null,
        }))
        .unwrap()
    }

    fn at(kind: FileBlockKind) -> FileRef {
        FileRef { file_id: "file_1".into(), kind, at: "events[0].content[0]".into() }
    }

    #[test]
    fn blocks_take_only_files_of_their_types_and_sizes() {
        let (image, doc) = (at(FileBlockKind::Image), at(FileBlockKind::Document));
        assert!(check_file(&image, &meta("image/png", 10)).is_ok());
        assert!(check_file(&image, &meta("image/svg+xml", 10)).is_err());
        assert!(check_file(&image, &meta("application/pdf", 10)).is_err());
        assert!(check_file(&image, &meta("image/jpeg", MAX_IMAGE_BYTES + 1)).is_err());
        assert!(check_file(&image, &meta("image/jpeg", 0)).is_err());
        for ok in ["application/pdf", "text/plain", "text/csv", "application/json", "application/ld+json"] {
            assert!(check_file(&doc, &meta(ok, MAX_DOCUMENT_BYTES)).is_ok(), "{ok}");
        }
        for bad in ["image/png", "application/zip", "application/octet-stream"] {
            assert!(check_file(&doc, &meta(bad, 10)).is_err(), "{bad}");
        }
        assert!(check_file(&doc, &meta("application/pdf", MAX_DOCUMENT_BYTES + 1)).is_err());
    }

    #[test]
    fn at_most_a_hundred_file_documents_per_request() {
        let doc = json!({"type": "document", "source": {"type": "file", "file_id": "file_d"}});
        let image = json!({"type": "image", "source": {"type": "file", "file_id": "file_i"}});
        let input = |n: usize| Input::Message { content: vec![doc.clone(); n].into_iter().chain([image.clone(), json!({"type": "text", "text": "x"})]).collect() };
        let refs = file_refs(&[input(60), input(40)], "events").unwrap();
        assert_eq!(refs.len(), 102);
        assert_eq!(refs[61], FileRef { file_id: "file_d".into(), kind: FileBlockKind::Document, at: "events[1].content[0]".into() });
        assert!(file_refs(&[input(60), input(41)], "events").is_err());
    }

    #[test]
    fn file_sources_become_what_the_provider_reads() {
        let file = |id: &str| json!({"type": "file", "file_id": id});
        let mut request = ModelRequest {
            model: "m".into(),
            system: None,
            messages: vec![Message {
                role: Role::User,
                content: vec![
                    ContentBlock::Image { source: file("file_png") },
                    ContentBlock::Document { source: file("file_pdf"), title: Some("Report".into()), context: None },
                    ContentBlock::Document { source: file("file_txt"), title: None, context: Some("notes".into()) },
                    ContentBlock::ToolResult { tool_use_id: "t".into(), content: vec![ContentBlock::Image { source: file("file_gone") }], is_error: false },
                    ContentBlock::Image { source: json!({"type": "url", "url": "https://x/y.png"}) },
                ],
            }],
            tools: vec![],
            max_tokens: 1,
            cache: false,
        };
        assert_eq!(file_ids(&request).into_iter().collect::<Vec<_>>(), ["file_gone", "file_pdf", "file_png", "file_txt"]);
        let files: HashMap<&str, ResolvedFile> = HashMap::from([
            ("file_png", ResolvedFile::from_bytes("image/png", b"\x89PNG")),
            ("file_pdf", ResolvedFile::from_bytes("application/pdf", b"%PDF-1.4")),
            ("file_txt", ResolvedFile::from_bytes("text/csv", b"a,b\n")),
            ("file_gone", ResolvedFile::Unavailable),
        ]);
        resolve(&mut request, |id| files.get(id));
        let c = &request.messages[0].content;
        assert_eq!(c[0], ContentBlock::Image { source: json!({"type": "base64", "media_type": "image/png", "data": "iVBORw=="}) });
        assert_eq!(
            c[1],
            ContentBlock::Document { source: json!({"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQ="}), title: Some("Report".into()), context: None }
        );
        assert_eq!(
            c[2],
            ContentBlock::Document { source: json!({"type": "text", "media_type": "text/plain", "data": "a,b\n"}), title: None, context: Some("notes".into()) }
        );
        let ContentBlock::ToolResult { content, .. } = &c[3] else { panic!() };
        assert_eq!(content[0], ContentBlock::Text { text: "(file file_gone is no longer available)".into() });
        assert_eq!(c[4], ContentBlock::Image { source: json!({"type": "url", "url": "https://x/y.png"}) });
        assert!(file_ids(&request).is_empty());
    }
}
