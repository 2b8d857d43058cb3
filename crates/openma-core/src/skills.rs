//! Skills: a directory of files led by a `SKILL.md`, uploaded as versions.
//!
//! An upload is a set of `(relative path, bytes)` pairs (the multipart `files[]` parts, or
//! the entries of one zip archive). It is checked here before anything is stored: every path
//! is a plain relative path inside one top-level directory, that directory holds a
//! `SKILL.md` whose YAML front matter names and describes the skill, and the counts and
//! sizes stay under [`MAX_FILES`], [`MAX_FILE_BYTES`] and [`MAX_TOTAL_BYTES`]. A zip is
//! read with the same limits applied to what it really inflates to, not to what it
//! declares, so a zip bomb stops at the first byte over.
//!
//! A version's files are stored as one zip archive (deflated, entries under `<name>/`) in
//! the blob store; that archive is what `…/content` returns. The skill's `name` is fixed
//! by its first version: later versions must carry the same one. Deleting a skill deletes
//! its versions; the last version of a skill cannot be deleted on its own, since a skill
//! always has a `latest_version_id`.

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};

use openma_types::Timestamp;
use openma_types::skills::{Skill, SkillSource, SkillSourceType, SkillVersion};
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, DomainResult, StoreError};
use crate::paging::Page;
use crate::agents::SkillCheck;
use crate::platform::{ListParams, Platform, list_query, position_of};
use crate::ports::{BlobStore, ByteStream, Clock, IdGen, Order, SkillStore};
use openma_types::agents::AgentTool;
use crate::tenancy::TenantId;
use crate::validate;

/// Files one version may hold.
pub const MAX_FILES: usize = 500;
/// Largest single file of a version.
pub const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;
/// All files of a version together (uncompressed).
pub const MAX_TOTAL_BYTES: u64 = 30 * 1024 * 1024;
/// A zip entry may inflate to at most this many times its compressed size (beyond 1 MiB).
pub const MAX_ZIP_RATIO: u64 = 100;
/// `limit` of the skill and version lists.
pub const MAX_LIST_LIMIT: u32 = 1_000;
/// The front matter `name`: kebab-case, at most this many characters.
pub const MAX_NAME_CHARS: usize = 64;
/// The front matter `description`: non-empty, at most this many characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1_024;
/// `display_name`: one line of at most this many characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 255;
const MAX_PATH_BYTES: usize = 1_024;
const MAX_SEGMENT_BYTES: usize = 255;
const SKILL_MD: &str = "SKILL.md";
/// Names the published Anthropic skills reserve.
const RESERVED_WORDS: &[&str] = &["anthropic", "claude"];

/// A skill as the store keeps it: the wire object and its immutable slug.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredSkill {
    pub skill: Skill,
    pub name: String,
}

/// A version as the store keeps it: the wire object and where its archive is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredSkillVersion {
    pub version: SkillVersion,
    pub blob_key: String,
    pub size_bytes: u64,
    pub sha256: String,
}

/// What deleting one version did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionRemoval {
    /// No such version of this skill.
    NotFound,
    /// It is the skill's only version.
    LastVersion,
    /// Removed; its archive's blob key is returned for deletion.
    Removed { blob_key: String },
}

/// One uploaded file: its path as the client sent it, and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadedFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

/// An upload that passed every check: its files by path below the top-level directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkillBundle {
    pub name: String,
    pub description: String,
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Counts an upload as it is read, so the edge can stop reading at the first byte over.
#[derive(Clone, Debug, Default)]
pub struct UploadBudget {
    files: usize,
    total: u64,
}

impl UploadBudget {
    /// Accounts for one more file; call before reading it.
    pub fn start_file(&mut self) -> DomainResult<()> {
        self.files += 1;
        if self.files > MAX_FILES {
            return Err(DomainError::invalid(format!("a skill may hold at most {MAX_FILES} files")));
        }
        Ok(())
    }

    /// Accounts for `n` more bytes of a file that has `file_so_far` bytes with them.
    pub fn add_bytes(&mut self, file_so_far: u64, n: u64) -> DomainResult<()> {
        self.total += n;
        if file_so_far > MAX_FILE_BYTES {
            return Err(DomainError::TooLarge(format!("a skill file may be at most {MAX_FILE_BYTES} bytes")));
        }
        if self.total > MAX_TOTAL_BYTES {
            return Err(DomainError::TooLarge(format!("a skill's files may total at most {MAX_TOTAL_BYTES} bytes")));
        }
        Ok(())
    }
}

/// Multipart framing on top of an upload's files (up to 500 part headers).
pub const FORM_OVERHEAD_BYTES: u64 = 2 * 1024 * 1024;

/// An upload's multipart form (`boundary` from its content type) as `body` streams in,
/// refused past the files' limit and the framing.
pub fn upload_form<S, E>(body: S, boundary: String) -> multer::Multipart<'static>
where
    S: futures::Stream<Item = Result<multer::bytes::Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    crate::edge::multipart_form(body, boundary, MAX_TOTAL_BYTES + FORM_OVERHEAD_BYTES)
}

/// The files of an upload (`files[]` parts whose filenames carry their paths, e.g.
/// `my-skill/SKILL.md`) and its `display_name` field, counted against the limits as they
/// arrive so reading stops at the first byte over. Other parts are read and ignored, as
/// unknown JSON fields are elsewhere.
pub async fn read_form(mut form: multer::Multipart<'_>) -> DomainResult<(Vec<UploadedFile>, Option<String>)> {
    let mut budget = UploadBudget::default();
    let mut files = Vec::new();
    let mut display_name = None;
    while let Some(mut field) = form.next_field().await.map_err(crate::edge::multipart_error)? {
        match field.name() {
            Some("files[]" | "files") => {
                let path = field
                    .file_name()
                    .map(str::to_owned)
                    .ok_or_else(|| DomainError::invalid("every `files[]` part needs a filename with its path (e.g. `my-skill/SKILL.md`)"))?;
                budget.start_file()?;
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(crate::edge::multipart_error)? {
                    bytes.extend_from_slice(&chunk);
                    budget.add_bytes(bytes.len() as u64, chunk.len() as u64)?;
                }
                files.push(UploadedFile { path, bytes });
            }
            Some("display_name") => display_name = Some(field.text().await.map_err(crate::edge::multipart_error)?),
            _ => while field.chunk().await.map_err(crate::edge::multipart_error)?.is_some() {},
        }
    }
    Ok((files, display_name))
}

/// A relative path of plain segments: no leading `/`, no `\`, no empty, `.` or `..`
/// segments, no control characters.
fn check_path(path: &str) -> DomainResult<()> {
    let bad = |why: &str| Err(DomainError::invalid(format!("file path `{}` {why}", path.escape_debug())));
    if path.is_empty() {
        return bad("is empty");
    }
    if path.len() > MAX_PATH_BYTES {
        return bad(&format!("is longer than {MAX_PATH_BYTES} bytes"));
    }
    if path.starts_with('/') || path.contains('\\') || path.contains(':') && path.split('/').next().is_some_and(|s| s.ends_with(':')) {
        return bad("must be relative, with `/` separators");
    }
    for seg in path.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return bad("must not have empty, `.` or `..` segments");
        }
        if seg.chars().any(char::is_control) {
            return bad("must not contain control characters");
        }
        if seg.len() > MAX_SEGMENT_BYTES {
            return bad(&format!("has a segment longer than {MAX_SEGMENT_BYTES} bytes"));
        }
    }
    Ok(())
}

/// Kebab-case: lower-case letters, digits and single inner hyphens.
fn check_name(name: &str, source: &str) -> DomainResult<()> {
    let kebab = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !kebab {
        return Err(DomainError::invalid(format!(
            "skill name `{}` ({source}) must be 1-{MAX_NAME_CHARS} lower-case letters, digits and single hyphens",
            name.escape_debug()
        )));
    }
    if let Some(word) = RESERVED_WORDS.iter().find(|w| name.split('-').any(|s| s == **w)) {
        return Err(DomainError::invalid(format!("skill name `{name}` must not contain the reserved word `{word}`")));
    }
    Ok(())
}

#[derive(Deserialize)]
struct FrontMatter {
    #[serde(default)]
    name: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    description: Option<serde_yaml_ng::Value>,
}

/// The `name` (if given) and `description` of a `SKILL.md`'s YAML front matter.
pub fn parse_front_matter(text: &str) -> DomainResult<(Option<String>, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    let opens = lines.next().is_some_and(|l| l.trim_end() == "---");
    if !opens {
        return Err(DomainError::invalid("SKILL.md must begin with YAML front matter between `---` lines"));
    }
    let mut yaml = String::new();
    let mut closed = false;
    for line in lines {
        if line.trim_end() == "---" {
            closed = true;
            break;
        }
        yaml.push_str(line);
    }
    if !closed {
        return Err(DomainError::invalid("SKILL.md front matter is not closed by a `---` line"));
    }
    let fm: FrontMatter = serde_yaml_ng::from_str(&yaml)
        .map_err(|e| DomainError::invalid(format!("SKILL.md front matter is not a YAML mapping: {e}")))?;
    let string = |v: Option<serde_yaml_ng::Value>, field: &str| -> DomainResult<Option<String>> {
        match v {
            None | Some(serde_yaml_ng::Value::Null) => Ok(None),
            Some(serde_yaml_ng::Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(DomainError::invalid(format!("SKILL.md front matter `{field}` must be a string"))),
        }
    };
    let name = string(fm.name, "name")?;
    let description = string(fm.description, "description")?.map(|d| d.trim().to_string()).unwrap_or_default();
    if description.is_empty() {
        return Err(DomainError::invalid("SKILL.md front matter needs a non-empty `description`"));
    }
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(DomainError::invalid(format!("SKILL.md `description` is longer than {MAX_DESCRIPTION_CHARS} characters")));
    }
    if description.contains('<') && description.contains('>') {
        return Err(DomainError::invalid("SKILL.md `description` must not contain XML tags"));
    }
    Ok((name, description))
}

/// Checks an upload's files and reads its `SKILL.md`.
pub fn bundle(files: Vec<UploadedFile>) -> DomainResult<SkillBundle> {
    if files.is_empty() {
        return Err(DomainError::invalid("the upload has no files: send `files[]` parts"));
    }
    if files.len() > MAX_FILES {
        return Err(DomainError::invalid(format!("a skill may hold at most {MAX_FILES} files")));
    }
    let mut top: Option<String> = None;
    let mut out = BTreeMap::new();
    let mut total = 0u64;
    for f in files {
        check_path(&f.path)?;
        let Some((dir, rest)) = f.path.split_once('/') else {
            return Err(DomainError::invalid(format!(
                "file `{}` must be inside the skill's top-level directory (e.g. `my-skill/{}`)",
                f.path, f.path
            )));
        };
        match &top {
            None => top = Some(dir.to_string()),
            Some(t) if t != dir => {
                return Err(DomainError::invalid(format!("all files must be in one top-level directory; found `{t}` and `{dir}`")));
            }
            Some(_) => {}
        }
        if f.bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(DomainError::TooLarge(format!("a skill file may be at most {MAX_FILE_BYTES} bytes; `{}` is larger", f.path)));
        }
        total += f.bytes.len() as u64;
        if total > MAX_TOTAL_BYTES {
            return Err(DomainError::TooLarge(format!("a skill's files may total at most {MAX_TOTAL_BYTES} bytes")));
        }
        if out.insert(rest.to_string(), f.bytes).is_some() {
            return Err(DomainError::invalid(format!("file `{}` appears twice", f.path)));
        }
    }
    // a path cannot be both a file and a directory
    let paths: Vec<&String> = out.keys().collect();
    for w in paths.windows(2) {
        if w[1].starts_with(&format!("{}/", w[0])) {
            return Err(DomainError::invalid(format!("`{}` is both a file and a directory", w[0])));
        }
    }
    let dir = top.unwrap_or_default();
    let skill_md = out
        .get(SKILL_MD)
        .ok_or_else(|| DomainError::invalid(format!("the upload needs a SKILL.md at the root of its top-level directory (`{dir}/SKILL.md`)")))?;
    let text = std::str::from_utf8(skill_md).map_err(|_| DomainError::invalid("SKILL.md is not UTF-8 text"))?;
    let (name, description) = parse_front_matter(text)?;
    let name = match name {
        Some(n) => {
            check_name(&n, "SKILL.md front matter `name`")?;
            n
        }
        None => {
            check_name(&dir, "the top-level directory, as SKILL.md has no `name`")?;
            dir
        }
    };
    Ok(SkillBundle { name, description, files: out })
}

/// Reads a zip upload into files, refusing what would inflate past the limits (the real
/// inflated bytes are counted, not the sizes the archive declares), symlinks and
/// encrypted entries. Directory entries are skipped.
pub fn unzip(archive: &[u8]) -> DomainResult<Vec<UploadedFile>> {
    let bad_zip = |e: zip::result::ZipError| DomainError::invalid(format!("the zip archive cannot be read: {e}"));
    let mut zip = zip::ZipArchive::new(Cursor::new(archive)).map_err(bad_zip)?;
    if zip.len() > MAX_FILES * 2 {
        return Err(DomainError::invalid(format!("a skill may hold at most {MAX_FILES} files")));
    }
    let mut budget = UploadBudget::default();
    let mut out = Vec::new();
    for i in 0..zip.len() {
        let entry = zip.by_index(i).map_err(bad_zip)?;
        if entry.is_dir() {
            continue;
        }
        let path = entry.name().map_err(bad_zip)?.to_string();
        if entry.is_symlink() {
            return Err(DomainError::invalid(format!("zip entry `{}` is a symbolic link", path.escape_debug())));
        }
        if entry.encrypted() {
            return Err(DomainError::invalid(format!("zip entry `{}` is encrypted", path.escape_debug())));
        }
        check_path(&path)?;
        budget.start_file()?;
        if entry.size() > MAX_FILE_BYTES {
            return Err(DomainError::TooLarge(format!("a skill file may be at most {MAX_FILE_BYTES} bytes; `{path}` is larger")));
        }
        let compressed = entry.compressed_size().max(1);
        let mut bytes = Vec::new();
        let mut reader = entry.take(MAX_FILE_BYTES + 1);
        let mut chunk = [0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut chunk).map_err(|e| DomainError::invalid(format!("zip entry `{path}` cannot be inflated: {e}")))?;
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&chunk[..n]);
            budget.add_bytes(bytes.len() as u64, n as u64)?;
            let inflated = bytes.len() as u64;
            if inflated > 1024 * 1024 && inflated / compressed > MAX_ZIP_RATIO {
                return Err(DomainError::invalid(format!(
                    "zip entry `{path}` inflates more than {MAX_ZIP_RATIO} times its compressed size; refused as a zip bomb"
                )));
            }
        }
        out.push(UploadedFile { path, bytes });
    }
    Ok(out)
}

/// True when an upload is one zip archive rather than the skill's files.
pub fn is_zip_upload(files: &[UploadedFile]) -> bool {
    match files {
        [only] => !only.path.contains('/') && (only.path.to_ascii_lowercase().ends_with(".zip") || only.bytes.starts_with(b"PK\x03\x04")),
        _ => false,
    }
}

impl SkillBundle {
    /// The version's archive: every file deflated under `<name>/`.
    pub fn archive(&self) -> DomainResult<Vec<u8>> {
        let fail = |e: String| DomainError::Store(StoreError::Backend(format!("the skill archive cannot be built: {e}")));
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o644);
        for (path, bytes) in &self.files {
            zip.start_file(format!("{}/{path}", self.name), options).map_err(|e| fail(e.to_string()))?;
            zip.write_all(bytes).map_err(|e| fail(e.to_string()))?;
        }
        Ok(zip.finish().map_err(|e| fail(e.to_string()))?.into_inner())
    }
}

/// Reads an upload (its files, or one zip of them) into a checked bundle.
pub fn read_upload(files: Vec<UploadedFile>) -> DomainResult<SkillBundle> {
    if is_zip_upload(&files) {
        let archive = files.into_iter().next().map(|f| f.bytes).unwrap_or_default();
        return bundle(unzip(&archive)?);
    }
    bundle(files)
}

/// `display_name`: one line of 1-255 characters.
pub fn check_display_name(name: &str) -> DomainResult<()> {
    if name.trim().is_empty() || name.chars().count() > MAX_DISPLAY_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(DomainError::invalid(format!("`display_name` must be one line of 1-{MAX_DISPLAY_NAME_CHARS} characters")));
    }
    Ok(())
}

/// The `source` filter of the skill list: every stored skill is `custom`.
pub fn parse_source(source: Option<&str>) -> DomainResult<Option<SkillSourceType>> {
    Ok(match source {
        None | Some("") => None,
        Some("custom") => Some(SkillSourceType::Custom),
        Some("anthropic") => Some(SkillSourceType::Anthropic),
        Some("anthropic_example") => Some(SkillSourceType::AnthropicExample),
        Some("plugin") => Some(SkillSourceType::Plugin),
        Some(other) => {
            return Err(DomainError::invalid(format!(
                "`source` `{}` is not one of `custom`, `anthropic`, `anthropic_example`, `plugin`",
                other.escape_debug()
            )));
        }
    })
}

fn not_found(id: &str) -> DomainError {
    DomainError::not_found("skill", id)
}

fn version_not_found(skill_id: &str, version: &str) -> DomainError {
    DomainError::NotFound(format!("version `{version}` of skill `{skill_id}` not found"))
}

fn name_taken(name: &str) -> DomainError {
    DomainError::Conflict { message: format!("a skill named `{name}` already exists"), code: Some("skill_name_taken") }
}

/// The Skills API and the skill rows' rules, over the ports they need: a skill table, a
/// blob store for the archives, a clock and ids. The native [`Platform`] and the Workers
/// build one each.
pub struct Skills<'a> {
    pub store: &'a dyn SkillStore,
    /// None: a deployment without a blob store refuses skills.
    pub blobs: Option<&'a dyn BlobStore>,
    pub clock: &'a dyn Clock,
    pub ids: &'a dyn IdGen,
}

/// An agent's skills must exist (each version too) and be readable by the `read` tool.
#[async_trait::async_trait]
impl SkillCheck for Skills<'_> {
    async fn check_skills(&self, tenant: &TenantId, skills: &[openma_types::agents::Skill], tools: &[AgentTool]) -> DomainResult<()> {
        crate::agents::check_skill_tools(skills, tools)?;
        for s in skills {
            self.get_version(tenant, &s.skill_id, &s.version).await?;
        }
        Ok(())
    }
}

impl Skills<'_> {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn blob_store(&self) -> DomainResult<&dyn BlobStore> {
        self.blobs.ok_or_else(|| DomainError::unsupported("skills without a blob store"))
    }

    async fn delete_blobs(&self, keys: impl Iterator<Item = String>) {
        let Ok(blobs) = self.blob_store() else { return };
        for key in keys {
            // an archive left behind costs space, not correctness: its row is gone
            let _ = blobs.delete(&key).await;
        }
    }

    async fn store_archive(&self, tenant: &TenantId, bundle: &SkillBundle) -> DomainResult<(String, crate::ports::BlobInfo)> {
        let archive = bundle.archive()?;
        let key = format!("skills/{}/{}", tenant.as_str(), self.ids.new_id("blob").to_ascii_lowercase());
        let size = archive.len() as u64;
        let body: ByteStream = Box::pin(futures::stream::iter([Ok(archive)]));
        let info = self.blob_store()?.put(&key, body, size).await.map_err(crate::files::blob_error)?;
        Ok((key, info))
    }

    fn new_version(&self, skill_id: &str, bundle: &SkillBundle, key: String, info: crate::ports::BlobInfo, now: Timestamp) -> StoredSkillVersion {
        StoredSkillVersion {
            version: SkillVersion {
                id: self.ids.new_id("skillver"),
                tag: Default::default(),
                skill_id: skill_id.to_string(),
                name: bundle.name.clone(),
                description: bundle.description.clone(),
                created_at: now,
            },
            blob_key: key,
            size_bytes: info.size,
            sha256: info.sha256,
        }
    }

    /// Creates a skill from its first upload. `409 skill_name_taken` when another skill of
    /// the tenant has the same name.
    pub async fn create(&self, tenant: &TenantId, files: Vec<UploadedFile>, display_name: Option<String>) -> DomainResult<Skill> {
        if let Some(d) = &display_name {
            check_display_name(d)?;
        }
        let bundle = read_upload(files)?;
        if self.store.find_skill_by_name(tenant, &bundle.name).await?.is_some() {
            return Err(name_taken(&bundle.name));
        }
        let (key, info) = self.store_archive(tenant, &bundle).await?;
        let now = self.now();
        let id = self.ids.new_id("skill");
        let version = self.new_version(&id, &bundle, key, info, now);
        let skill = Skill {
            id,
            tag: Default::default(),
            display_name: display_name.unwrap_or_else(|| bundle.name.clone()),
            latest_version_id: version.version.id.clone(),
            source: SkillSource { kind: SkillSourceType::Custom },
            created_at: now,
            updated_at: now,
        };
        let stored = StoredSkill { skill, name: bundle.name.clone() };
        match self.store.insert_skill(tenant, &stored, &version).await {
            Ok(()) => Ok(stored.skill),
            Err(e) => {
                self.delete_blobs(std::iter::once(version.blob_key)).await;
                Err(match e {
                    StoreError::Duplicate(_) => name_taken(&bundle.name),
                    other => other.into(),
                })
            }
        }
    }

    async fn load_skill(&self, tenant: &TenantId, id: &str) -> DomainResult<StoredSkill> {
        if !validate::looks_like_id(id, "skill_") {
            return Err(not_found(id));
        }
        self.store.get_skill(tenant, id).await?.ok_or_else(|| not_found(id))
    }

    pub async fn get(&self, tenant: &TenantId, id: &str) -> DomainResult<Skill> {
        Ok(self.load_skill(tenant, id).await?.skill)
    }

    /// Skills, newest first. Only `custom` skills exist here, so another `source` lists none.
    pub async fn list(&self, tenant: &TenantId, params: &ListParams, source: Option<&str>) -> DomainResult<Page<Skill>> {
        let source = parse_source(source)?;
        let params = ListParams { include_archived: true, ..params.clone() };
        let (req, query) = list_query(&params, Order::Desc, MAX_LIST_LIMIT)?;
        let rows = match source {
            None | Some(SkillSourceType::Custom) => self.store.list_skills(tenant, &query).await?,
            Some(_) => Vec::new(),
        };
        let page = req.finish(rows, |s| position_of(s.skill.created_at, &s.skill.id));
        Ok(Page { data: page.data.into_iter().map(|s| s.skill).collect(), next_page: page.next_page, prev_page: page.prev_page })
    }

    /// Deletes a skill with all its versions and their archives.
    pub async fn delete(&self, tenant: &TenantId, id: &str) -> DomainResult<()> {
        self.load_skill(tenant, id).await?;
        let keys = self.store.delete_skill(tenant, id).await?.ok_or_else(|| not_found(id))?;
        self.delete_blobs(keys.into_iter()).await;
        Ok(())
    }

    /// Adds a version; it becomes the skill's latest. Its `SKILL.md` must carry the
    /// skill's name.
    pub async fn create_version(&self, tenant: &TenantId, skill_id: &str, files: Vec<UploadedFile>) -> DomainResult<SkillVersion> {
        let skill = self.load_skill(tenant, skill_id).await?;
        let bundle = read_upload(files)?;
        if bundle.name != skill.name {
            return Err(DomainError::invalid(format!(
                "the upload's skill name `{}` differs from this skill's name `{}`; a skill's name cannot change",
                bundle.name, skill.name
            )));
        }
        let (key, info) = self.store_archive(tenant, &bundle).await?;
        let now = self.now().strictly_after(skill.skill.updated_at);
        let version = self.new_version(skill_id, &bundle, key, info, now);
        match self.store.insert_skill_version(tenant, &version).await {
            Ok(true) => Ok(version.version),
            Ok(false) => {
                self.delete_blobs(std::iter::once(version.blob_key)).await;
                Err(not_found(skill_id))
            }
            Err(e) => {
                self.delete_blobs(std::iter::once(version.blob_key)).await;
                Err(e.into())
            }
        }
    }

    async fn load_skill_version(&self, tenant: &TenantId, skill_id: &str, version: &str) -> DomainResult<StoredSkillVersion> {
        let skill = self.load_skill(tenant, skill_id).await?;
        let id = if version == "latest" { skill.skill.latest_version_id.as_str() } else { version };
        if !validate::looks_like_id(id, "skillver_") {
            return Err(version_not_found(skill_id, version));
        }
        self.store.get_skill_version(tenant, skill_id, id).await?.ok_or_else(|| version_not_found(skill_id, version))
    }

    /// A version by id, or the skill's newest for `latest`.
    pub async fn get_version(&self, tenant: &TenantId, skill_id: &str, version: &str) -> DomainResult<SkillVersion> {
        Ok(self.load_skill_version(tenant, skill_id, version).await?.version)
    }

    /// A skill's versions, newest first.
    pub async fn list_versions(&self, tenant: &TenantId, skill_id: &str, params: &ListParams) -> DomainResult<Page<SkillVersion>> {
        self.load_skill(tenant, skill_id).await?;
        let params = ListParams { include_archived: true, ..params.clone() };
        let (req, query) = list_query(&params, Order::Desc, MAX_LIST_LIMIT)?;
        let rows = self.store.list_skill_versions(tenant, skill_id, &query).await?;
        let page = req.finish(rows, |v| position_of(v.version.created_at, &v.version.id));
        Ok(Page { data: page.data.into_iter().map(|v| v.version).collect(), next_page: page.next_page, prev_page: page.prev_page })
    }

    /// Deletes one version; the skill's latest moves to the newest one left. The only
    /// version of a skill is refused (delete the skill instead).
    pub async fn delete_version(&self, tenant: &TenantId, skill_id: &str, version: &str) -> DomainResult<String> {
        let found = self.load_skill_version(tenant, skill_id, version).await?;
        let id = found.version.id;
        match self.store.delete_skill_version(tenant, skill_id, &id, self.now()).await? {
            VersionRemoval::NotFound => Err(version_not_found(skill_id, version)),
            VersionRemoval::LastVersion => Err(DomainError::invalid(format!(
                "version `{id}` is the only version of skill `{skill_id}`; delete the skill instead"
            ))),
            VersionRemoval::Removed { blob_key } => {
                self.delete_blobs(std::iter::once(blob_key)).await;
                Ok(id)
            }
        }
    }

    /// The files of a session agent's skills, each below `<name>/`, with what the model is
    /// told about them. A skill or version deleted since the agent was saved is an error.
    pub async fn session_files(&self, tenant: &TenantId, skills: &[openma_types::agents::Skill]) -> DomainResult<Vec<(SkillVersion, Vec<UploadedFile>)>> {
        let mut out = Vec::new();
        for s in skills {
            let (version, _, mut body) = self.download_version(tenant, &s.skill_id, &s.version).await.map_err(|e| match e {
                DomainError::NotFound(m) => DomainError::invalid(format!("the agent's skill `{}` is gone: {m}", s.skill_id)),
                other => other,
            })?;
            let mut archive = Vec::new();
            while let Some(chunk) = futures::StreamExt::next(&mut body).await {
                archive.extend(chunk.map_err(crate::files::blob_error)?);
            }
            out.push((version, unzip(&archive)?));
        }
        Ok(out)
    }

    /// A version's archive: its metadata, the archive's size and its bytes.
    pub async fn download_version(&self, tenant: &TenantId, skill_id: &str, version: &str) -> DomainResult<(SkillVersion, u64, ByteStream)> {
        let v = self.load_skill_version(tenant, skill_id, version).await?;
        let body = self.blob_store()?.get(&v.blob_key).await.map_err(crate::files::blob_error)?;
        let body = body.ok_or_else(|| {
            DomainError::Store(StoreError::Backend(format!("the archive of skill version `{}` is missing from the blob store", v.version.id)))
        })?;
        Ok((v.version, v.size_bytes, body))
    }
}

impl Platform {
    /// The skill service over this platform's store and blob store.
    pub fn skills(&self) -> Skills<'_> {
        Skills { store: &*self.store, blobs: self.blobs.as_deref(), clock: &*self.clock, ids: &*self.ids }
    }

    pub async fn create_skill(&self, tenant: &TenantId, files: Vec<UploadedFile>, display_name: Option<String>) -> DomainResult<Skill> {
        self.skills().create(tenant, files, display_name).await
    }

    pub async fn get_skill(&self, tenant: &TenantId, id: &str) -> DomainResult<Skill> {
        self.skills().get(tenant, id).await
    }

    pub async fn list_skills(&self, tenant: &TenantId, params: &ListParams, source: Option<&str>) -> DomainResult<Page<Skill>> {
        self.skills().list(tenant, params, source).await
    }

    pub async fn delete_skill(&self, tenant: &TenantId, id: &str) -> DomainResult<()> {
        self.skills().delete(tenant, id).await
    }

    pub async fn create_skill_version(&self, tenant: &TenantId, skill_id: &str, files: Vec<UploadedFile>) -> DomainResult<SkillVersion> {
        self.skills().create_version(tenant, skill_id, files).await
    }

    pub async fn get_skill_version(&self, tenant: &TenantId, skill_id: &str, version: &str) -> DomainResult<SkillVersion> {
        self.skills().get_version(tenant, skill_id, version).await
    }

    pub async fn list_skill_versions(&self, tenant: &TenantId, skill_id: &str, params: &ListParams) -> DomainResult<Page<SkillVersion>> {
        self.skills().list_versions(tenant, skill_id, params).await
    }

    pub async fn delete_skill_version(&self, tenant: &TenantId, skill_id: &str, version: &str) -> DomainResult<String> {
        self.skills().delete_version(tenant, skill_id, version).await
    }

    pub async fn session_skills(&self, tenant: &TenantId, skills: &[openma_types::agents::Skill]) -> DomainResult<Vec<(SkillVersion, Vec<UploadedFile>)>> {
        self.skills().session_files(tenant, skills).await
    }

    pub async fn download_skill_version(&self, tenant: &TenantId, skill_id: &str, version: &str) -> DomainResult<(SkillVersion, u64, ByteStream)> {
        self.skills().download_version(tenant, skill_id, version).await
    }
}

/// The system prompt section that lists the session's skills (read on demand).
pub fn system_note(skills: &[(String, String)]) -> Option<String> {
    if skills.is_empty() {
        return None;
    }
    let mut note = String::from(
        "# Skills\nThese skills are installed read-only under /mnt/skills. When a task matches a skill's description, \
         read its SKILL.md first and follow it; its other files are next to it.\n",
    );
    for (name, description) in skills {
        note.push_str(&format!("- {name} (/mnt/skills/{name}/SKILL.md): {description}\n"));
    }
    Some(note)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, body: &str) -> UploadedFile {
        UploadedFile { path: path.into(), bytes: body.as_bytes().to_vec() }
    }

    const MD: &str = "---\nname: pdf-tools\ndescription: Works with PDFs.\n---\n# PDF tools\n";

    #[test]
    fn a_directory_with_skill_md_becomes_a_bundle() {
        let b = bundle(vec![file("pdf-tools/SKILL.md", MD), file("pdf-tools/scripts/run.py", "print(1)")]).unwrap();
        assert_eq!(b.name, "pdf-tools");
        assert_eq!(b.description, "Works with PDFs.");
        assert_eq!(b.files.keys().collect::<Vec<_>>(), ["SKILL.md", "scripts/run.py"]);
    }

    #[test]
    fn the_name_falls_back_to_the_directory() {
        let b = bundle(vec![file("my-dir/SKILL.md", "---\ndescription: d\n---\n")]).unwrap();
        assert_eq!(b.name, "my-dir");
        assert!(bundle(vec![file("My Dir/SKILL.md", "---\ndescription: d\n---\n")]).is_err());
    }

    #[test]
    fn traversal_and_odd_paths_are_refused() {
        for bad in ["../x/SKILL.md", "/abs/SKILL.md", "a/../SKILL.md", "a\\b/SKILL.md", "a//SKILL.md", "a/./SKILL.md", "a/b\u{0}c", "C:/x/SKILL.md"] {
            assert!(bundle(vec![file("a/SKILL.md", MD), file(bad, "x")]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn one_top_level_directory_and_a_root_skill_md_are_required() {
        assert!(bundle(vec![file("a/SKILL.md", MD), file("b/x.txt", "x")]).is_err());
        assert!(bundle(vec![file("SKILL.md", MD)]).is_err());
        assert!(bundle(vec![file("a/sub/SKILL.md", MD)]).is_err());
        assert!(bundle(vec![]).is_err());
        assert!(bundle(vec![file("a/SKILL.md", MD), file("a/SKILL.md", MD)]).is_err());
    }

    #[test]
    fn front_matter_rules() {
        assert!(parse_front_matter("# no front matter").is_err());
        assert!(parse_front_matter("---\nname: x\n").is_err());
        assert!(parse_front_matter("---\nname: x\n---\n").is_err(), "description is required");
        assert!(parse_front_matter("---\n- a\n- b\n---\n").is_err());
        assert!(parse_front_matter("---\nname: [1]\ndescription: d\n---\n").is_err());
        assert!(parse_front_matter(&format!("---\ndescription: {}\n---\n", "d".repeat(1025))).is_err());
        assert_eq!(parse_front_matter("---\r\nname: a\r\ndescription: 'x: y'\r\n---\r\n").unwrap(), (Some("a".into()), "x: y".into()));
        for bad in ["Upper", "a_b", "-a", "a-", "a--b", "claude-helper", &"a".repeat(65)] {
            assert!(check_name(bad, "t").is_err(), "{bad}");
        }
        check_name("a1-b2", "t").unwrap();
    }

    #[test]
    fn archives_round_trip_and_zip_uploads_are_read() {
        let b = bundle(vec![file("pdf-tools/SKILL.md", MD), file("pdf-tools/a/b.txt", "hello")]).unwrap();
        let zip = b.archive().unwrap();
        let files = vec![UploadedFile { path: "skill.zip".into(), bytes: zip }];
        assert!(is_zip_upload(&files));
        assert_eq!(read_upload(files).unwrap(), b);
    }

    #[test]
    fn zip_bombs_are_refused() {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("x/SKILL.md", options).unwrap();
        zip.write_all(MD.as_bytes()).unwrap();
        zip.start_file("x/zeros.bin", options).unwrap();
        zip.write_all(&vec![0u8; 8 * 1024 * 1024]).unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        assert!(bytes.len() < 100_000);
        let err = unzip(&bytes).unwrap_err();
        assert!(err.to_string().contains("zip bomb"), "{err}");
    }

    #[test]
    fn budgets_stop_at_the_first_byte_over() {
        let mut b = UploadBudget::default();
        b.start_file().unwrap();
        assert!(b.add_bytes(MAX_FILE_BYTES + 1, MAX_FILE_BYTES + 1).is_err());
        let mut b = UploadBudget::default();
        for _ in 0..MAX_FILES {
            b.start_file().unwrap();
        }
        assert!(b.start_file().is_err());
    }
}
