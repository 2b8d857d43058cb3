//! Files: uploads, the session-scoped copies that mount them into a sandbox, and the
//! outputs a session leaves in `/mnt/session/outputs/`.
//!
//! A file's bytes live in the [`BlobStore`](crate::ports::BlobStore) under a key the core
//! picks; its row says who may see it. Mounting a file makes a new row (a new `file_id`,
//! scoped to the session) that shares the blob, so mounts copy no bytes and the original
//! can be deleted without breaking the session. A blob is deleted with the last row that
//! refers to it.

use futures::StreamExt;
use openma_types::events::ClientEvent;
use openma_types::files::{FileMetadata, FileResource, FileResourceParams, FileScope};
use openma_types::memory::MemoryStoreResourceParams;
use openma_types::sessions::GitHubRepositoryResourceParams;
use openma_types::sessions::{Session, SessionResource, SessionStatus};
use openma_types::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{DomainError, DomainResult};
use crate::harness::file_blocks::{self, ResolvedFile};
use crate::harness::input::Input;
use crate::paging::{Page, PageRequest};
use crate::platform::{ListParams, Platform, UPDATE_ATTEMPTS};
use crate::ports::{Clock, FileStore, IdGen, SessionStore};
use crate::ports::{BlobError, BlobInfo, BlobStore, ByteStream, Order, Position};
use crate::tenancy::TenantId;
use crate::validate;

/// `expires_in_seconds` bounds: one hour to ninety days.
pub const MIN_EXPIRES_SECS: i64 = 3_600;
pub const MAX_EXPIRES_SECS: i64 = 7_776_000;
/// Largest upload accepted unless the operator says otherwise.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 500 * 1024 * 1024;
/// Files a session may have mounted at once, and outputs it may leave.
pub const FILES_PER_SESSION: i64 = 500;
pub const OUTPUTS_PER_SESSION: i64 = 1_000;
/// Memory stores one session may attach.
pub const MEMORY_STORES_PER_SESSION: usize = 8;
/// `limit` of the file list, and the most ids one `ids[]` filter may name.
pub const MAX_LIST_LIMIT: u32 = 1_000;
pub const MAX_IDS: usize = 100;
pub const UPLOADS_ROOT: &str = "/mnt/session/uploads";
pub const OUTPUTS_ROOT: &str = "/mnt/session/outputs";
const MAX_PATH_BYTES: usize = 1_024;
const MAX_FILENAME_BYTES: usize = 255;

/// How a file came to exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileOrigin {
    /// `POST /v1/files`.
    Upload,
    /// The session-scoped copy made when a file is mounted into a session.
    Mount,
    /// Captured from a session's `/mnt/session/outputs/`.
    Output,
}

impl FileOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            FileOrigin::Upload => "upload",
            FileOrigin::Mount => "mount",
            FileOrigin::Output => "output",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "upload" => FileOrigin::Upload,
            "mount" => FileOrigin::Mount,
            "output" => FileOrigin::Output,
            _ => return None,
        })
    }
}

/// A file as the store keeps it: the client-visible metadata and where its bytes are.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredFile {
    pub meta: FileMetadata,
    pub blob_key: String,
    pub sha256: String,
    pub origin: FileOrigin,
    /// Mount copies: the sandbox path; outputs: the path below `/mnt/session/outputs/`.
    pub path: Option<String>,
    /// The bytes were removed when the file expired.
    pub purged: bool,
}

impl StoredFile {
    pub fn scope_id(&self) -> Option<&str> {
        self.meta.scope.as_ref().map(|s| s.id.as_str())
    }

    pub(crate) fn expired(&self, now: Timestamp) -> bool {
        self.purged || self.meta.expires_at.is_some_and(|e| e <= now)
    }
}

/// A new upload's bytes, stored but not yet registered: [`Files::create_upload`]
/// registers them or deletes them.
#[derive(Debug)]
pub struct PendingBlob {
    pub key: String,
    pub info: BlobInfo,
}

/// What the multipart form said about an upload besides its bytes.
#[derive(Clone, Debug, Default)]
pub struct UploadFields {
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub expires_in_seconds: Option<i64>,
}

/// The file list's filters, as parsed at the edge.
#[derive(Clone, Debug, Default)]
pub struct FileListParams {
    pub page: ListParams,
    pub scope_id: Option<String>,
    pub ids: Vec<String>,
}

impl FileListParams {
    /// The list's query parameters as every deployment reads them (an empty `scope_id` is none).
    pub fn from_query(page: openma_types::query::PageParams, filter: openma_types::query::FileFilter) -> Self {
        FileListParams {
            page: ListParams { limit: page.limit, page: page.page, ..Default::default() },
            scope_id: filter.scope_id.filter(|s| !s.is_empty()),
            ids: filter.ids,
        }
    }
}

/// RFC 6266 `attachment` with an RFC 5987 UTF-8 filename and an ASCII fallback: the
/// `Content-Disposition` of a download, as every deployment sends it.
pub fn content_disposition(filename: &str) -> String {
    let ascii: String = filename.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let encoded: String = filename
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// `expires_in_seconds` must lie between one hour and ninety days.
pub fn check_expires(secs: i64) -> DomainResult<()> {
    if (MIN_EXPIRES_SECS..=MAX_EXPIRES_SECS).contains(&secs) {
        Ok(())
    } else {
        Err(DomainError::invalid(format!("`expires_in_seconds` must be between {MIN_EXPIRES_SECS} and {MAX_EXPIRES_SECS}, got {secs}")))
    }
}

/// The multipart `expires_in_seconds` field, as text: an integer in range.
pub fn parse_expires(text: &str) -> DomainResult<i64> {
    let secs = text.trim().parse::<i64>().map_err(|_| DomainError::invalid(format!("`expires_in_seconds` must be an integer, got `{text}`")))?;
    check_expires(secs)?;
    Ok(secs)
}

/// Only the last component of a client's filename is kept, without control characters;
/// nothing left → `unnamed` plus the extension of its type.
pub fn clean_filename(raw: Option<&str>, mime: &str) -> String {
    let last = raw.unwrap_or("").rsplit(['/', '\\']).next().unwrap_or("");
    let mut name: String = last.chars().filter(|c| !c.is_control()).collect();
    name = name.trim().to_string();
    if name == "." || name == ".." {
        name.clear();
    }
    while name.len() > MAX_FILENAME_BYTES {
        name.pop();
    }
    if name.is_empty() {
        return match extension_of(mime) {
            Some(ext) => format!("unnamed.{ext}"),
            None => "unnamed".into(),
        };
    }
    name
}

const TYPES: &[(&str, &str)] = &[
    ("txt", "text/plain"),
    ("md", "text/markdown"),
    ("csv", "text/csv"),
    ("tsv", "text/tab-separated-values"),
    ("html", "text/html"),
    ("htm", "text/html"),
    ("css", "text/css"),
    ("xml", "application/xml"),
    ("json", "application/json"),
    ("jsonl", "application/jsonl"),
    ("yaml", "application/yaml"),
    ("yml", "application/yaml"),
    ("toml", "application/toml"),
    ("js", "text/javascript"),
    ("ts", "text/x-typescript"),
    ("py", "text/x-python"),
    ("rs", "text/x-rust"),
    ("sh", "application/x-sh"),
    ("pdf", "application/pdf"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("svg", "image/svg+xml"),
    ("zip", "application/zip"),
    ("gz", "application/gzip"),
    ("tar", "application/x-tar"),
    ("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ("pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
];

fn extension_of(mime: &str) -> Option<&'static str> {
    TYPES.iter().find(|(_, m)| *m == mime).map(|(e, _)| *e)
}

/// The declared type when it is specific and well-formed, else one guessed from the name.
pub fn mime_type(declared: Option<&str>, filename: Option<&str>) -> String {
    let declared = declared.map(|d| d.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    if let Some(d) = declared.filter(|d| well_formed_mime(d) && d != "application/octet-stream") {
        return d;
    }
    let ext = filename.and_then(|f| f.rsplit_once('.')).map(|(_, e)| e.to_ascii_lowercase());
    ext.and_then(|e| TYPES.iter().find(|(x, _)| *x == e).map(|(_, m)| (*m).to_string()))
        .unwrap_or_else(|| "application/octet-stream".into())
}

fn well_formed_mime(m: &str) -> bool {
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b));
    m.len() <= 255 && m.split_once('/').is_some_and(|(t, s)| token(t) && token(s))
}

/// Checks a sandbox path made of plain segments (no empty, `.` or `..` ones).
fn clean_segments(path: &str, field: &str) -> DomainResult<()> {
    if path.len() > MAX_PATH_BYTES {
        return Err(DomainError::invalid(format!("`{field}` is longer than {MAX_PATH_BYTES} bytes")));
    }
    for seg in path.split('/').skip(1) {
        if seg.is_empty() || seg == "." || seg == ".." || seg.contains('\0') || seg.chars().any(char::is_control) {
            return Err(DomainError::invalid(format!(
                "`{field}` `{path}` must be an absolute path of plain names (no empty, `.` or `..` segments)"
            )));
        }
        if seg.len() > MAX_FILENAME_BYTES {
            return Err(DomainError::invalid(format!("`{field}`: a path segment is longer than {MAX_FILENAME_BYTES} bytes")));
        }
    }
    Ok(())
}

/// Where a mounted file appears: always below `/mnt/session/uploads/` (`/data.csv` →
/// `/mnt/session/uploads/data.csv`); by default `/mnt/session/uploads/<file_id>`.
pub fn mount_path(raw: Option<&str>, file_id: &str) -> DomainResult<String> {
    let path = match raw {
        None => return Ok(format!("{UPLOADS_ROOT}/{file_id}")),
        Some(p) if p.starts_with(&format!("{UPLOADS_ROOT}/")) => p.to_string(),
        Some(p) if p.starts_with('/') => format!("{UPLOADS_ROOT}{p}"),
        Some(p) => format!("{UPLOADS_ROOT}/{p}"),
    };
    clean_segments(&path, "mount_path")?;
    if path.trim_end_matches('/') == UPLOADS_ROOT {
        return Err(DomainError::invalid("`mount_path` must name a file below /mnt/session/uploads/"));
    }
    Ok(path)
}

/// An output's path below `/mnt/session/outputs/` as the capture found it.
pub fn output_path(rel: &str) -> DomainResult<String> {
    let path = format!("{OUTPUTS_ROOT}/{rel}");
    clean_segments(&path, "path")?;
    Ok(rel.to_string())
}

/// The `resources` of a session create body, parsed: files to mount and memory stores to
/// attach; repositories are refused until they are supported.
#[derive(Clone, Debug, Default)]
pub struct ResourceParams {
    pub files: Vec<FileResourceParams>,
    pub memory_stores: Vec<MemoryStoreResourceParams>,
    pub repositories: Vec<GitHubRepositoryResourceParams>,
}

pub fn resource_params(resources: &[Value]) -> DomainResult<ResourceParams> {
    let mut out = ResourceParams::default();
    for (i, r) in resources.iter().enumerate() {
        let parse_err = |e: serde_json::Error| DomainError::invalid(format!("resources[{i}]: {e}"));
        match r.get("type").and_then(Value::as_str) {
            Some("file") => out.files.push(serde_json::from_value(r.clone()).map_err(parse_err)?),
            Some("memory_store") => out.memory_stores.push(serde_json::from_value(r.clone()).map_err(parse_err)?),
            Some("github_repository") => {
                let p: GitHubRepositoryResourceParams = serde_json::from_value(r.clone()).map_err(parse_err)?;
                crate::repositories::check_params(&p, i)?;
                out.repositories.push(p);
            }
            Some(other) => {
                return Err(DomainError::invalid(format!(
                    "resources[{i}].type `{other}` is not one of `file`, `memory_store`, `github_repository`"
                )));
            }
            None => return Err(DomainError::invalid(format!("resources[{i}] needs a `type`"))),
        }
    }
    if out.files.len() as i64 > FILES_PER_SESSION {
        return Err(DomainError::invalid(format!("a session may mount at most {FILES_PER_SESSION} files")));
    }
    if out.memory_stores.len() > MEMORY_STORES_PER_SESSION {
        return Err(DomainError::invalid(format!("a session may attach at most {MEMORY_STORES_PER_SESSION} memory stores")));
    }
    Ok(out)
}

/// The files a session mounts.
pub fn file_resources(s: &Session) -> impl Iterator<Item = &FileResource> {
    s.resources.iter().filter_map(|r| match r {
        SessionResource::File(f) => Some(f),
        SessionResource::MemoryStore(_) | SessionResource::GitHubRepository(_) => None,
    })
}

fn not_found(id: &str) -> DomainError {
    DomainError::not_found("file", id)
}

/// The Files API and the file rows' rules, over the ports they need: a file table, a blob
/// store, a clock and ids. The native [`Platform`] and the Workers build one each.
pub struct Files<'a> {
    pub store: &'a dyn FileStore,
    /// None: a deployment without a blob store refuses the Files API.
    pub blobs: Option<&'a dyn BlobStore>,
    pub clock: &'a dyn Clock,
    pub ids: &'a dyn IdGen,
}

impl Files<'_> {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn blob_store(&self) -> DomainResult<&dyn BlobStore> {
        self.blobs.ok_or_else(|| DomainError::unsupported("the Files API without a blob store"))
    }

    fn blob_key(&self, tenant: &TenantId) -> String {
        format!("files/{}/{}", tenant.as_str(), self.ids.new_id("blob").to_ascii_lowercase())
    }

    /// Stores an upload's bytes; [`Files::create_upload`] then registers them.
    pub async fn put_upload(&self, tenant: &TenantId, body: ByteStream, max_bytes: u64) -> DomainResult<PendingBlob> {
        let key = self.blob_key(tenant);
        let info = self.blob_store()?.put(&key, body, max_bytes).await.map_err(blob_error)?;
        Ok(PendingBlob { key, info })
    }

    /// Deletes stored bytes that will not be registered (the request failed after them).
    pub async fn discard_upload(&self, pending: PendingBlob) {
        if let Ok(blobs) = self.blob_store() {
            let _ = blobs.delete(&pending.key).await;
        }
    }

    /// Registers an upload whose bytes [`Files::put_upload`] stored; they are deleted
    /// again when the fields are refused.
    pub async fn create_upload(&self, tenant: &TenantId, pending: PendingBlob, fields: &UploadFields) -> DomainResult<FileMetadata> {
        let meta = match self.upload_metadata(fields, pending.info.size) {
            Ok(m) => m,
            Err(e) => {
                self.discard_upload(pending).await;
                return Err(e);
            }
        };
        let file = StoredFile { meta, blob_key: pending.key.clone(), sha256: pending.info.sha256.clone(), origin: FileOrigin::Upload, path: None, purged: false };
        if let Err(e) = self.store.insert_file(tenant, &file).await {
            self.discard_upload(pending).await;
            return Err(e.into());
        }
        Ok(file.meta)
    }

    fn upload_metadata(&self, fields: &UploadFields, size: u64) -> DomainResult<FileMetadata> {
        let now = self.now();
        let expires_at = match fields.expires_in_seconds {
            None => None,
            Some(s) => {
                check_expires(s)?;
                Some(Timestamp::from_micros(now.as_micros() + s * 1_000_000))
            }
        };
        let mime = mime_type(fields.content_type.as_deref(), fields.filename.as_deref());
        Ok(FileMetadata {
            id: self.ids.new_id("file"),
            tag: Default::default(),
            filename: clean_filename(fields.filename.as_deref(), &mime),
            mime_type: mime,
            size_bytes: size,
            created_at: now,
            downloadable: true,
            expires_at,
            scope: None,
        })
    }

    pub(crate) async fn load_file(&self, tenant: &TenantId, id: &str) -> DomainResult<StoredFile> {
        if !validate::looks_like_id(id, "file_") {
            return Err(not_found(id));
        }
        self.store.get_file(tenant, id).await?.ok_or_else(|| not_found(id))
    }

    pub async fn get(&self, tenant: &TenantId, id: &str) -> DomainResult<FileMetadata> {
        Ok(self.load_file(tenant, id).await?.meta)
    }

    /// The file's metadata and bytes; an expired file is `404 file_expired`.
    pub async fn download(&self, tenant: &TenantId, id: &str) -> DomainResult<(FileMetadata, ByteStream)> {
        let file = self.load_file(tenant, id).await?;
        if file.expired(self.now()) {
            return Err(DomainError::Gone { message: format!("file `{id}` has expired and its content is no longer available"), code: "file_expired" });
        }
        if !file.meta.downloadable {
            return Err(DomainError::invalid_code("file_not_downloadable", format!("file `{id}` cannot be downloaded")));
        }
        let body = self.blob_store()?.get(&file.blob_key).await.map_err(blob_error)?;
        let body = body.ok_or_else(|| DomainError::Store(crate::StoreError::Backend(format!("the bytes of file `{id}` are missing from the blob store"))))?;
        Ok((file.meta, body))
    }

    pub async fn list(&self, tenant: &TenantId, p: &FileListParams) -> DomainResult<Page<FileMetadata>> {
        if let Some(scope) = &p.scope_id
            && !validate::looks_like_id(scope, "sesn_")
        {
            return Err(DomainError::invalid(format!("`scope_id` `{scope}` is not a session id")));
        }
        if !p.ids.is_empty() {
            if p.page.page.is_some() || p.page.limit.is_some() {
                return Err(DomainError::invalid("`ids` cannot be combined with `page` or `limit`"));
            }
            let mut ids: Vec<String> = Vec::new();
            for id in &p.ids {
                if !ids.contains(id) {
                    ids.push(id.clone());
                }
            }
            if ids.len() > MAX_IDS {
                return Err(DomainError::invalid(format!("`ids` may name at most {MAX_IDS} files")));
            }
            let mut rows = self.store.get_files(tenant, &ids).await?;
            if let Some(scope) = &p.scope_id {
                rows.retain(|f| f.scope_id() == Some(scope));
            }
            rows.sort_by(|a, b| (b.meta.created_at, &b.meta.id).cmp(&(a.meta.created_at, &a.meta.id)));
            return Ok(Page { data: rows.into_iter().map(|f| f.meta).collect(), next_page: None, prev_page: None });
        }
        let (req, query) = crate::platform::list_query(&p.page, Order::Desc, MAX_LIST_LIMIT)?;
        let rows = self.store.list_files(tenant, &query, p.scope_id.as_deref()).await?;
        Ok(req.finish(rows, |f| crate::platform::position_of(f.meta.created_at, &f.meta.id)).map(|f| f.meta))
    }

    pub async fn delete(&self, tenant: &TenantId, id: &str) -> DomainResult<()> {
        if !validate::looks_like_id(id, "file_") {
            return Err(not_found(id));
        }
        if self.drop_file(tenant, id).await? { Ok(()) } else { Err(not_found(id)) }
    }

    /// Deletes a file's row, and its blob when no other row shares it; false when there
    /// was no such file.
    pub(crate) async fn drop_file(&self, tenant: &TenantId, id: &str) -> DomainResult<bool> {
        let Some(orphan) = self.store.delete_file(tenant, id).await? else { return Ok(false) };
        self.delete_blobs(orphan.into_iter()).await;
        Ok(true)
    }

    pub async fn delete_blobs(&self, keys: impl Iterator<Item = String>) {
        let Ok(blobs) = self.blob_store() else { return };
        for key in keys {
            // A blob left behind costs space, not correctness: the row is gone.
            let _ = blobs.delete(&key).await;
        }
    }

    /// Removes the bytes of files past their expiry (all tenants); returns how many.
    pub async fn purge_expired(&self, limit: u32) -> DomainResult<usize> {
        let expired = self.store.expired_files(self.now(), limit).await?;
        let n = expired.len();
        for (tenant, f) in expired {
            if let Some(key) = self.store.purge_file_blob(&tenant, &f.meta.id).await? {
                self.delete_blobs(std::iter::once(key)).await;
            }
        }
        Ok(n)
    }

    /// Deletes what a deleted session's files held.
    pub async fn delete_session_files(&self, tenant: &TenantId, session_id: &str) -> DomainResult<()> {
        let orphans = self.store.delete_scoped_files(tenant, session_id).await?;
        self.delete_blobs(orphans.into_iter()).await;
        Ok(())
    }

    // ---- session file resources ----------------------------------------------------------

    /// Makes the session-scoped copies of the files a new session mounts. The copies are
    /// rows only; the caller puts the bytes into the sandbox.
    pub async fn mount_copies(
        &self,
        tenant: &TenantId,
        session_id: &str,
        params: &[FileResourceParams],
    ) -> DomainResult<Vec<(FileResource, StoredFile)>> {
        let mut out: Vec<(FileResource, StoredFile)> = Vec::new();
        for p in params {
            let (resource, copy) = self.prepare_mount(tenant, session_id, p, out.iter().map(|(r, _)| r)).await?;
            out.push((resource, copy));
        }
        for (i, (_, copy)) in out.iter().enumerate() {
            if let Err(e) = self.store.insert_scoped_file(tenant, copy, FILES_PER_SESSION).await {
                for (_, done) in &out[..i] {
                    let _ = self.store.delete_file(tenant, &done.meta.id).await;
                }
                return Err(e.into());
            }
        }
        Ok(out)
    }

    pub(crate) async fn prepare_mount<'a>(
        &self,
        tenant: &TenantId,
        session_id: &str,
        p: &FileResourceParams,
        existing: impl Iterator<Item = &'a FileResource>,
    ) -> DomainResult<(FileResource, StoredFile)> {
        let source = self.load_file(tenant, &p.file_id).await?;
        let now = self.now();
        if source.expired(now) {
            return Err(DomainError::invalid_code("file_expired", format!("file `{}` has expired and cannot be mounted", p.file_id)));
        }
        let path = mount_path(p.mount_path.as_deref(), &p.file_id)?;
        for r in existing {
            let clash = r.mount_path == path
                || path.starts_with(&format!("{}/", r.mount_path))
                || r.mount_path.starts_with(&format!("{path}/"));
            if clash {
                return Err(DomainError::conflict(format!("`mount_path` `{path}` collides with the file mounted at `{}`", r.mount_path)));
            }
        }
        let mut meta = source.meta.clone();
        meta.id = self.ids.new_id("file");
        meta.created_at = now;
        meta.scope = Some(FileScope { id: session_id.to_string(), tag: Default::default() });
        let copy = StoredFile { meta, blob_key: source.blob_key, sha256: source.sha256, origin: FileOrigin::Mount, path: Some(path.clone()), purged: false };
        let resource = FileResource {
            id: self.ids.new_id("sesrsc"),
            tag: Default::default(),
            file_id: copy.meta.id.clone(),
            mount_path: path,
            created_at: now,
            updated_at: now,
        };
        Ok((resource, copy))
    }

    /// The bytes of a stored file, for putting into a sandbox.
    pub async fn file_bytes(&self, file: &StoredFile) -> DomainResult<ByteStream> {
        let body = self.blob_store()?.get(&file.blob_key).await.map_err(blob_error)?;
        body.ok_or_else(|| DomainError::Store(crate::StoreError::Backend(format!("the bytes of file `{}` are missing", file.meta.id))))
    }

    // ---- files named by content blocks ----------------------------------------------------

    /// Checks the `file` sources of `inputs` before they are accepted: each file exists for
    /// this tenant (404 otherwise), has not expired (400 `file_expired`), and has a type
    /// and size its block can carry (400). `where_` names the list in messages.
    pub async fn check_file_blocks(&self, tenant: &TenantId, inputs: &[Input], where_: &str) -> DomainResult<()> {
        let refs = file_blocks::file_refs(inputs, where_)?;
        if refs.is_empty() {
            return Ok(());
        }
        let files = self.files_by_id(tenant, refs.iter().map(|r| r.file_id.as_str())).await?;
        let now = self.now();
        for r in &refs {
            let file = files.iter().find(|f| f.meta.id == r.file_id).ok_or_else(|| not_found(&r.file_id))?;
            if file.expired(now) {
                return Err(DomainError::invalid_code("file_expired", format!("{}: file `{}` has expired", r.at, r.file_id)));
            }
            file_blocks::check_file(r, &file.meta)?;
        }
        Ok(())
    }

    /// The files among `ids` that exist for this tenant, in one store call per hundred ids.
    async fn files_by_id<'a>(&self, tenant: &TenantId, ids: impl Iterator<Item = &'a str>) -> DomainResult<Vec<StoredFile>> {
        let mut wanted: Vec<String> = Vec::new();
        for id in ids {
            if validate::looks_like_id(id, "file_") && !wanted.iter().any(|w| w == id) {
                wanted.push(id.to_owned());
            }
        }
        let mut out = Vec::new();
        for chunk in wanted.chunks(MAX_IDS) {
            out.extend(self.store.get_files(tenant, chunk).await?);
        }
        Ok(out)
    }

    /// The files among `ids` whose content a model may still receive: those deleted or
    /// expired since they were referenced are left out.
    pub async fn live_files(&self, tenant: &TenantId, ids: &[String]) -> DomainResult<Vec<StoredFile>> {
        let now = self.now();
        let mut files = self.files_by_id(tenant, ids.iter().map(String::as_str)).await?;
        files.retain(|f| !f.expired(now));
        Ok(files)
    }

    /// A file's content as a model request carries it; [`ResolvedFile::Unavailable`] when
    /// its bytes are gone or larger than any block may carry. Fails only when the blob store
    /// does.
    pub async fn file_for_model(&self, file: &StoredFile) -> DomainResult<ResolvedFile> {
        let Some(mut body) = self.blob_store()?.get(&file.blob_key).await.map_err(blob_error)? else {
            return Ok(ResolvedFile::Unavailable);
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await {
            bytes.extend(chunk.map_err(blob_error)?);
            if bytes.len() as u64 > file_blocks::MAX_DOCUMENT_BYTES {
                return Ok(ResolvedFile::Unavailable);
            }
        }
        Ok(ResolvedFile::from_bytes(&file.meta.mime_type, &bytes))
    }
}

impl Platform {
    /// The file service over this platform's store and blob store.
    pub fn files(&self) -> Files<'_> {
        Files { store: &*self.store, blobs: self.blobs.as_deref(), clock: &*self.clock, ids: &*self.ids }
    }

    pub(crate) fn blob_store(&self) -> DomainResult<&dyn BlobStore> {
        self.blobs.as_deref().ok_or_else(|| DomainError::unsupported("the Files API without a blob store"))
    }

    pub async fn put_upload(&self, tenant: &TenantId, body: ByteStream, max_bytes: u64) -> DomainResult<PendingBlob> {
        self.files().put_upload(tenant, body, max_bytes).await
    }

    pub async fn discard_upload(&self, pending: PendingBlob) {
        self.files().discard_upload(pending).await
    }

    pub async fn create_upload(&self, tenant: &TenantId, pending: PendingBlob, fields: &UploadFields) -> DomainResult<FileMetadata> {
        self.files().create_upload(tenant, pending, fields).await
    }

    pub async fn get_file(&self, tenant: &TenantId, id: &str) -> DomainResult<FileMetadata> {
        self.files().get(tenant, id).await
    }

    pub async fn download_file(&self, tenant: &TenantId, id: &str) -> DomainResult<(FileMetadata, ByteStream)> {
        self.files().download(tenant, id).await
    }

    pub async fn list_files(&self, tenant: &TenantId, p: &FileListParams) -> DomainResult<Page<FileMetadata>> {
        self.files().list(tenant, p).await
    }

    pub async fn delete_file(&self, tenant: &TenantId, id: &str) -> DomainResult<()> {
        self.files().delete(tenant, id).await
    }

    pub(crate) async fn delete_blobs(&self, keys: impl Iterator<Item = String>) {
        self.files().delete_blobs(keys).await
    }

    pub async fn purge_expired_files(&self, limit: u32) -> DomainResult<usize> {
        self.files().purge_expired(limit).await
    }

    pub async fn delete_session_files(&self, tenant: &TenantId, session_id: &str) -> DomainResult<()> {
        self.files().delete_session_files(tenant, session_id).await
    }

    pub(crate) async fn mount_copies(&self, tenant: &TenantId, session_id: &str, params: &[FileResourceParams]) -> DomainResult<Vec<(FileResource, StoredFile)>> {
        self.files().mount_copies(tenant, session_id, params).await
    }

    pub async fn file_bytes(&self, file: &StoredFile) -> DomainResult<ByteStream> {
        self.files().file_bytes(file).await
    }

    pub async fn check_file_blocks(&self, tenant: &TenantId, inputs: &[Input], where_: &str) -> DomainResult<()> {
        self.files().check_file_blocks(tenant, inputs, where_).await
    }

    // ---- session file resources ----------------------------------------------------------

    /// The file resources and outputs of sessions, on this platform's stores.
    pub fn session_files(&self) -> SessionFiles<'_> {
        SessionFiles { sessions: &*self.store, files: self.files() }
    }

    // ---- files named by content blocks ----------------------------------------------------

    /// Client events checked into inputs, their `file` sources included (see
    /// [`Files::check_file_blocks`]).
    pub async fn accept_events(&self, tenant: &TenantId, events: Vec<ClientEvent>) -> DomainResult<Vec<Input>> {
        let inputs = crate::harness::input::parse_events(events)?;
        self.check_file_blocks(tenant, &inputs, "events").await?;
        Ok(inputs)
    }
}

/// The files of sessions: those mounted into them (added and removed while they live) and
/// the outputs they leave. The native server and the Workers both run it.
pub struct SessionFiles<'a> {
    pub sessions: &'a dyn SessionStore,
    pub files: Files<'a>,
}

impl SessionFiles<'_> {
    async fn load(&self, tenant: &TenantId, id: &str) -> DomainResult<Session> {
        let missing = || DomainError::not_found("session", id);
        if !validate::looks_like_id(id, "sesn_") {
            return Err(missing());
        }
        self.sessions.get_session(tenant, id).await?.ok_or_else(missing)
    }

    // ---- session file resources ----------------------------------------------------------

    /// Mounts one more file into a session. Returns the resource and its copy, whose bytes
    /// the caller puts into the sandbox.
    pub async fn add_file_resource(
        &self,
        tenant: &TenantId,
        session_id: &str,
        p: &FileResourceParams,
    ) -> DomainResult<(FileResource, StoredFile)> {
        let session = self.load(tenant, session_id).await?;
        check_open(&session)?;
        let (resource, copy) = self.files.prepare_mount(tenant, session_id, p, file_resources(&session)).await?;
        if !self.files.store.insert_scoped_file(tenant, &copy, FILES_PER_SESSION).await? {
            return Err(DomainError::invalid(format!("a session may mount at most {FILES_PER_SESSION} files")));
        }
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.load(tenant, session_id).await?;
            if let Err(e) = check_open(&current).and_then(|()| {
                match file_resources(&current).find(|r| r.mount_path == resource.mount_path) {
                    Some(r) => Err(DomainError::conflict(format!("another file is already mounted at `{}` ({})", resource.mount_path, r.id))),
                    None => Ok(()),
                }
            }) {
                let _ = self.files.store.delete_file(tenant, &copy.meta.id).await;
                return Err(e);
            }
            let mut next = current.clone();
            next.resources.push(SessionResource::File(resource.clone()));
            next.updated_at = self.files.now().strictly_after(current.updated_at);
            if self.sessions.update_session(tenant, &next, current.updated_at).await? {
                return Ok((resource, copy));
            }
        }
        let _ = self.files.store.delete_file(tenant, &copy.meta.id).await;
        Err(DomainError::conflict(format!("session `{session_id}` is being changed concurrently; retry")))
    }

    pub async fn list_session_resources(
        &self,
        tenant: &TenantId,
        session_id: &str,
        limit: Option<i64>,
        page: Option<&str>,
    ) -> DomainResult<Page<SessionResource>> {
        let session = self.load(tenant, session_id).await?;
        // "If omitted, returns all resources": one page up to the per-session maximum. The
        // cursor holds the position in the session's list and the id found there.
        let req = PageRequest::new(Some(limit.unwrap_or(MAX_LIST_LIMIT as i64)), Order::Asc, page, MAX_LIST_LIMIT)?;
        let start = match &req.cursor {
            None => 0,
            Some(c) => match session.resources.iter().position(|r| r.id() == c.position.id) {
                Some(i) => i + 1,
                None => usize::try_from(c.position.created_at).unwrap_or(0),
            },
        };
        let rows: Vec<(usize, SessionResource)> =
            session.resources.into_iter().enumerate().skip(start).take(req.limit as usize + 1).collect();
        let mut out = req.finish(rows, |(i, r)| Position { created_at: *i as i64 + 1, id: r.id().to_owned() }).map(|(_, r)| r);
        out.prev_page = None;
        Ok(out)
    }

    pub async fn get_session_resource(&self, tenant: &TenantId, session_id: &str, id: &str) -> DomainResult<SessionResource> {
        let session = self.load(tenant, session_id).await?;
        session.resources.into_iter().find(|r| r.id() == id).ok_or_else(|| DomainError::not_found("session resource", id))
    }

    /// Only GitHub repositories have a token to rotate; none can be mounted yet.
    pub async fn update_session_resource(&self, tenant: &TenantId, session_id: &str, id: &str, token: &str) -> DomainResult<SessionResource> {
        let resource = self.get_session_resource(tenant, session_id, id).await?;
        if token.is_empty() {
            return Err(DomainError::invalid("`authorization_token` must not be empty"));
        }
        match resource {
            SessionResource::File(_) => Err(DomainError::invalid(
                "only `github_repository` resources have an `authorization_token` to rotate; this is a `file` resource",
            )),
            SessionResource::MemoryStore(_) => Err(DomainError::invalid(
                "only `github_repository` resources have an `authorization_token` to rotate; this is a `memory_store` resource",
            )),
            // the token is used once, to clone before the agent starts: sandboxes have no
            // network, so no later git traffic could use a rotated one
            SessionResource::GitHubRepository(_) => Err(DomainError::unsupported(
                "rotating a repository's `authorization_token` (it is used only to clone at session start; sandboxes have no network)",
            )),
        }
    }

    /// Unmounts a file: the resource and its session-scoped copy go. Returns the removed
    /// resource so the caller can take the bytes out of the sandbox.
    pub async fn delete_session_resource(&self, tenant: &TenantId, session_id: &str, id: &str) -> DomainResult<FileResource> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.load(tenant, session_id).await?;
            let Some(i) = current.resources.iter().position(|r| r.id() == id) else {
                return Err(DomainError::not_found("session resource", id));
            };
            check_open(&current)?;
            let mut next = current.clone();
            let removed = match next.resources.remove(i) {
                SessionResource::File(f) => f,
                SessionResource::MemoryStore(_) => {
                    return Err(DomainError::invalid("memory stores are attached for the whole session and cannot be removed from it"));
                }
                SessionResource::GitHubRepository(_) => {
                    return Err(DomainError::invalid("repositories are cloned for the whole session and cannot be removed from it"));
                }
            };
            next.updated_at = self.files.now().strictly_after(current.updated_at);
            if self.sessions.update_session(tenant, &next, current.updated_at).await? {
                self.files.drop_file(tenant, &removed.file_id).await?;
                return Ok(removed);
            }
        }
        Err(DomainError::conflict(format!("session `{session_id}` is being changed concurrently; retry")))
    }

    /// The copies behind a session's mounted files, with their mount paths.
    pub async fn session_mounts(&self, tenant: &TenantId, session_id: &str) -> DomainResult<Vec<(FileResource, StoredFile)>> {
        let session = self.load(tenant, session_id).await?;
        let mut out = Vec::new();
        for r in file_resources(&session) {
            if let Some(f) = self.files.store.get_file(tenant, &r.file_id).await? {
                out.push((r.clone(), f));
            }
        }
        Ok(out)
    }

    // ---- session outputs --------------------------------------------------------------

    /// The outputs captured so far, by path.
    pub async fn session_outputs(&self, tenant: &TenantId, session_id: &str) -> DomainResult<Vec<StoredFile>> {
        let mut out = Vec::new();
        let mut params = ListParams { limit: Some(MAX_LIST_LIMIT as i64), ..Default::default() };
        loop {
            let (req, query) = crate::platform::list_query(&params, Order::Asc, MAX_LIST_LIMIT)?;
            let rows = self.files.store.list_files(tenant, &query, Some(session_id)).await?;
            let page = req.finish(rows, |f| crate::platform::position_of(f.meta.created_at, &f.meta.id));
            out.extend(page.data.into_iter().filter(|f| f.origin == FileOrigin::Output));
            match page.next_page {
                Some(next) => params.page = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Captures one file of a session's outputs (`rel` is its path below
    /// `/mnt/session/outputs/`). A file captured before with other bytes is replaced by the
    /// new capture; the same bytes are not captured twice.
    pub async fn capture_output(
        &self,
        tenant: &TenantId,
        session_id: &str,
        rel: &str,
        previous: Option<&StoredFile>,
        body: ByteStream,
        max_bytes: u64,
    ) -> DomainResult<Option<FileMetadata>> {
        let rel = output_path(rel)?;
        let pending = self.files.put_upload(tenant, body, max_bytes).await?;
        if previous.is_some_and(|p| p.sha256 == pending.info.sha256) {
            self.files.discard_upload(pending).await;
            return Ok(None);
        }
        let filename = rel.rsplit('/').next().unwrap_or(&rel).to_string();
        let mime = mime_type(None, Some(&filename));
        let now = self.files.now();
        let meta = FileMetadata {
            id: self.files.ids.new_id("file"),
            tag: Default::default(),
            filename: clean_filename(Some(&filename), &mime),
            mime_type: mime,
            size_bytes: pending.info.size,
            created_at: now,
            downloadable: true,
            expires_at: None,
            scope: Some(FileScope { id: session_id.to_string(), tag: Default::default() }),
        };
        let file = StoredFile { meta, blob_key: pending.key.clone(), sha256: pending.info.sha256.clone(), origin: FileOrigin::Output, path: Some(rel), purged: false };
        match self.files.store.insert_scoped_file(tenant, &file, OUTPUTS_PER_SESSION + 1).await {
            Ok(true) => {}
            Ok(false) => {
                self.files.discard_upload(pending).await;
                return Err(DomainError::invalid(format!("a session may leave at most {OUTPUTS_PER_SESSION} output files")));
            }
            Err(e) => {
                self.files.discard_upload(pending).await;
                return Err(e.into());
            }
        }
        if let Some(prev) = previous {
            self.files.drop_file(tenant, &prev.meta.id).await?;
        }
        Ok(Some(file.meta))
    }
}

/// Files can be mounted into and removed from sessions that are not terminated.
fn check_open(s: &Session) -> DomainResult<()> {
    if s.archived_at.is_some() || s.status == SessionStatus::Terminated {
        return Err(DomainError::invalid(format!("session `{}` is terminated; its resources cannot change", s.id)));
    }
    Ok(())
}

pub(crate) fn blob_error(e: BlobError) -> DomainError {
    match e {
        BlobError::TooLarge(max) => DomainError::TooLarge(format!("the file is larger than the {max}-byte limit")),
        BlobError::Source(m) => DomainError::invalid(format!("the upload could not be read: {m}")),
        BlobError::Backend(m) => DomainError::Store(crate::StoreError::Backend(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_disposition_quotes_nothing_it_should_not() {
        let h = content_disposition("rapport \"final\" é.pdf");
        assert_eq!(h, "attachment; filename=\"rapport _final_ _.pdf\"; filename*=UTF-8''rapport%20%22final%22%20%C3%A9.pdf");
    }

    #[test]
    fn filenames_keep_only_their_last_component() {
        assert_eq!(clean_filename(Some("../../etc/passwd"), "text/plain"), "passwd");
        assert_eq!(clean_filename(Some("C:\\Users\\me\\report.pdf"), "application/pdf"), "report.pdf");
        assert_eq!(clean_filename(Some("a\u{0}b\nc.txt"), "text/plain"), "abc.txt");
        assert_eq!(clean_filename(Some(""), "text/csv"), "unnamed.csv");
        assert_eq!(clean_filename(None, "application/x-unknown"), "unnamed");
        assert_eq!(clean_filename(Some("dir/"), "application/json"), "unnamed.json");
        assert_eq!(clean_filename(Some(".."), "text/plain"), "unnamed.txt");
        assert_eq!(clean_filename(Some(&"é".repeat(200)), "text/plain").len(), 254);
    }

    #[test]
    fn mime_types_come_from_the_part_or_the_name() {
        assert_eq!(mime_type(Some("text/csv; charset=utf-8"), Some("x.bin")), "text/csv");
        assert_eq!(mime_type(Some("application/octet-stream"), Some("data.JSON")), "application/json");
        assert_eq!(mime_type(None, Some("noext")), "application/octet-stream");
        assert_eq!(mime_type(Some("not a type"), Some("a.png")), "image/png");
    }

    #[test]
    fn mount_paths_are_rooted_under_uploads() {
        assert_eq!(mount_path(None, "file_1").unwrap(), "/mnt/session/uploads/file_1");
        assert_eq!(mount_path(Some("/data.csv"), "f").unwrap(), "/mnt/session/uploads/data.csv");
        assert_eq!(mount_path(Some("in/data.csv"), "f").unwrap(), "/mnt/session/uploads/in/data.csv");
        assert_eq!(mount_path(Some("/mnt/session/uploads/a/b"), "f").unwrap(), "/mnt/session/uploads/a/b");
        for bad in ["/../etc/passwd", "/a//b", "/a/./b", "/", "/mnt/session/uploads/", "/a\u{0}"] {
            assert!(mount_path(Some(bad), "f").is_err(), "{bad:?}");
        }
        assert!(mount_path(Some(&format!("/{}", "a".repeat(300))), "f").is_err());
    }

    #[test]
    fn resources_of_unknown_or_unsupported_types_are_refused() {
        let ok = resource_params(&[
            serde_json::json!({"type": "file", "file_id": "file_1"}),
            serde_json::json!({"type": "memory_store", "memory_store_id": "memstore_1", "access": "read_only"}),
        ])
        .unwrap();
        assert_eq!(ok.files[0].file_id, "file_1");
        assert_eq!(ok.memory_stores[0].memory_store_id, "memstore_1");
        assert!(resource_params(&[serde_json::json!({"type": "memory_store", "memory_store_id": "m", "access": "write_only"})]).is_err());
        assert_eq!(resource_params(&[serde_json::json!({"type": "github_repository", "url": "https://github.com/a/b"})]).unwrap().repositories.len(), 1);
        assert!(resource_params(&[serde_json::json!({"type": "github_repository", "url": "git@github.com:a/b"})]).is_err());
        assert!(resource_params(&[serde_json::json!({"type": "disk"})]).is_err());
        assert!(resource_params(&[serde_json::json!({"type": "file"})]).is_err());
        let many: Vec<Value> = (0..501).map(|i| serde_json::json!({"type": "file", "file_id": format!("file_{i}")})).collect();
        assert!(resource_params(&many).is_err());
        let stores: Vec<Value> = (0..9).map(|i| serde_json::json!({"type": "memory_store", "memory_store_id": format!("memstore_{i}")})).collect();
        assert!(resource_params(&stores).is_err());
    }
}
