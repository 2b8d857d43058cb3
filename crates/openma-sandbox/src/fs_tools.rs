//! The file tools, run from the host on the session's workspace (see `paths` for why no
//! path can leave it): `read`, `write`, `edit`, `glob`, `grep`.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine;
use cap_std::fs::{Dir, FileType, OpenOptions, OpenOptionsExt};
use globset::GlobBuilder;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use openma_core::harness::tools::ToolOutput;
use serde::Deserialize;
use serde_json::json;

use crate::paths::{Workspace, WsPath, io_message};

/// Lines shown by a `read` without `view_range`.
const READ_DEFAULT_LINES: usize = 2000;
/// Longer lines are cut in `read` output.
const READ_LINE_CHARS: usize = 2000;
/// Beyond this much scanned, `read` stops counting the file's lines.
const READ_COUNT_BYTES: u64 = 256 << 20;
/// The Messages API's limit for one image.
const IMAGE_MAX_BYTES: u64 = 5 << 20;
const EDIT_MAX_BYTES: u64 = 64 << 20;
const GLOB_MAX_RESULTS: usize = 1000;
const GREP_MAX_LINES: usize = 1000;
const GREP_LINE_CHARS: usize = 500;
const GREP_MAX_FILE_BYTES: u64 = 256 << 20;
/// Directory entries a glob or grep looks at before it stops.
const WALK_MAX_ENTRIES: usize = 200_000;
const WALK_MAX_DEPTH: usize = 64;
const SNIFF_BYTES: usize = 8192;
/// Bytes of one line kept by `read` (it shows 2000 characters) and matched by `grep`.
const READ_LINE_KEEP_BYTES: usize = READ_LINE_CHARS * 4 + 4;
const GREP_LINE_KEEP_BYTES: usize = 1 << 20;

#[derive(Deserialize)]
pub(crate) struct ReadInput {
    file_path: String,
    view_range: Option<Vec<i64>>,
}

#[derive(Deserialize)]
pub(crate) struct WriteInput {
    file_path: String,
    content: String,
}

#[derive(Deserialize)]
pub(crate) struct EditInput {
    file_path: String,
    old_string: String,
    new_string: String,
    replace_all: Option<bool>,
}

#[derive(Deserialize)]
pub(crate) struct GlobInput {
    pattern: String,
    path: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct GrepInput {
    pattern: String,
    path: Option<String>,
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(msg) => return ToolOutput::error(msg),
        }
    };
}

fn nonblocking_read() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    o
}

/// Reads up to `n` bytes (fewer only at end of file).
fn read_prefix(r: &mut impl Read, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    r.take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

fn image_type(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if head.starts_with(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

fn cut_chars(s: &str, max: usize) -> (&str, bool) {
    match s.char_indices().nth(max) {
        Some((i, _)) => (&s[..i], true),
        None => (s, false),
    }
}

/// Like `read_until(b'\n')`, but keeps at most `keep` bytes of the line (the rest is read
/// and dropped), so a file with no newlines cannot take all memory. Returns the bytes read.
fn read_line_capped(
    r: &mut impl BufRead,
    line: &mut Vec<u8>,
    keep: usize,
) -> std::io::Result<usize> {
    let mut read = 0;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(read);
        }
        let (chunk, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let room = keep.saturating_sub(line.len()).min(chunk.len());
        line.extend_from_slice(&chunk[..room]);
        if done && room < chunk.len() {
            line.push(b'\n');
        }
        let used = chunk.len();
        r.consume(used);
        read += used;
        if done {
            return Ok(read);
        }
    }
}

fn strip_eol(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
}

pub(crate) fn read(ws: &Workspace, input: ReadInput, limit_chars: usize) -> ToolOutput {
    let range = match input.view_range.as_deref() {
        None => None,
        Some([start, end]) => {
            if *start < 1 {
                return ToolOutput::error(format!(
                    "view_range is 1-based: the start line must be at least 1, got {start}"
                ));
            }
            if *end > 0 && end < start {
                return ToolOutput::error(format!(
                    "view_range [{start}, {end}] ends before it starts"
                ));
            }
            Some((
                *start as u64,
                if *end <= 0 { None } else { Some(*end as u64) },
            ))
        }
        Some(other) => {
            return ToolOutput::error(format!(
                "view_range must be [start_line, end_line], got {} numbers",
                other.len()
            ));
        }
    };
    let path = tri!(ws.resolve(&input.file_path));
    let display = path.display();
    let file = tri!(ws.open_file(&path));
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut file = file.into_std();
    let head = tri!(read_prefix(&mut file, SNIFF_BYTES).map_err(|e| io_message(&display, &e)));
    if let Some(media_type) = image_type(&head) {
        if size > IMAGE_MAX_BYTES {
            return ToolOutput::error(format!(
                "{display} is an image of {size} bytes, more than the {IMAGE_MAX_BYTES} bytes an image may have; make it smaller with bash first"
            ));
        }
        let mut data = head;
        tri!(
            file.read_to_end(&mut data)
                .map_err(|e| io_message(&display, &e))
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
        return ToolOutput {
            content: vec![
                json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": b64}}),
            ],
            is_error: false,
            usage: None,
        };
    }
    if head.starts_with(b"%PDF-") {
        return ToolOutput::text(format!(
            "{display} is a PDF document ({size} bytes); the read tool shows text and images only. Extract its text with bash (for example `pdftotext {display} -`)."
        ));
    }
    if head.contains(&0) {
        return ToolOutput::text(format!(
            "{display} is a binary file ({size} bytes); inspect it with bash (for example `file`, `xxd | head`)."
        ));
    }
    if size == 0 {
        return ToolOutput::text(format!("{display} is empty."));
    }
    let (start, end) = range.unwrap_or((1, Some(READ_DEFAULT_LINES as u64)));
    let mut reader = BufReader::with_capacity(64 * 1024, std::io::Cursor::new(head).chain(file));
    let mut out = String::new();
    let mut line = Vec::new();
    let mut n: u64 = 0;
    let mut scanned: u64 = 0;
    let mut last_shown: u64 = 0;
    let mut budget_hit = false;
    let mut counted_all = true;
    loop {
        line.clear();
        let got = tri!(
            read_line_capped(&mut reader, &mut line, READ_LINE_KEEP_BYTES)
                .map_err(|e| io_message(&display, &e))
        );
        if got == 0 {
            break;
        }
        n += 1;
        scanned += got as u64;
        let wanted = n >= start && end.is_none_or(|e| n <= e) && !budget_hit;
        if wanted {
            strip_eol(&mut line);
            let text = String::from_utf8_lossy(&line);
            let (shown, cut) = cut_chars(&text, READ_LINE_CHARS);
            let entry = format!(
                "{n:>6}\t{shown}{}\n",
                if cut { " … [line cut]" } else { "" }
            );
            if out.len() + entry.len() > limit_chars && last_shown > 0 {
                budget_hit = true;
            } else {
                out.push_str(&entry);
                last_shown = n;
            }
        }
        if scanned > READ_COUNT_BYTES && (budget_hit || end.is_some_and(|e| n >= e)) {
            counted_all = false;
            break;
        }
    }
    let total = n;
    if start > total {
        return ToolOutput::error(format!(
            "view_range starts at line {start} but {display} has {total} lines"
        ));
    }
    let of_total = if counted_all {
        format!("of {total}")
    } else {
        format!("of more than {total}")
    };
    if budget_hit {
        out.push_str(&format!(
            "\n[Output limit reached: showing lines {start}-{last_shown} {of_total}. Use view_range [{}, …] to continue.]",
            last_shown + 1
        ));
    } else if range.is_none() && (total > last_shown || !counted_all) {
        out.push_str(&format!(
            "\n[Showing lines 1-{last_shown} {of_total}. Use view_range [{}, …] to read further.]",
            last_shown + 1
        ));
    }
    ToolOutput::text(out)
}

pub(crate) fn write(ws: &Workspace, input: WriteInput) -> ToolOutput {
    let path = tri!(ws.resolve(&input.file_path));
    let display = path.display();
    if path.is_root() {
        return ToolOutput::error(format!("{display} is a directory"));
    }
    tri!(ws.create_parents(&path));
    let (mut file, created) = tri!(ws.create_file(&path));
    tri!(
        file.write_all(input.content.as_bytes())
            .map_err(|e| io_message(&display, &e))
    );
    let bytes = input.content.len();
    ToolOutput::text(if created {
        format!("Created {display} ({bytes} bytes).")
    } else {
        format!("Wrote {display} ({bytes} bytes).")
    })
}

pub(crate) fn edit(ws: &Workspace, input: EditInput) -> ToolOutput {
    if input.old_string.is_empty() {
        return ToolOutput::error(
            "old_string must not be empty (use the write tool to create or replace a whole file)",
        );
    }
    if input.old_string == input.new_string {
        return ToolOutput::error(
            "old_string and new_string are identical: there is nothing to change",
        );
    }
    let path = tri!(ws.resolve(&input.file_path));
    let display = path.display();
    let file = tri!(ws.open_file(&path));
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > EDIT_MAX_BYTES {
        return ToolOutput::error(format!(
            "{display} is too large to edit ({size} bytes); use bash (e.g. sed)"
        ));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    tri!(
        file.into_std()
            .read_to_end(&mut bytes)
            .map_err(|e| io_message(&display, &e))
    );
    let Ok(content) = String::from_utf8(bytes) else {
        return ToolOutput::error(format!("{display} is not UTF-8 text; edit it with bash"));
    };
    let count = content.matches(&input.old_string).count();
    let replace_all = input.replace_all == Some(true);
    if count == 0 {
        return ToolOutput::error(format!(
            "old_string was not found in {display} (0 matches). It must match the file exactly, including whitespace and indentation."
        ));
    }
    if count > 1 && !replace_all {
        return ToolOutput::error(format!(
            "old_string was found {count} times in {display}; it must occur exactly once. Add surrounding lines to make it unique, or set replace_all to replace every occurrence."
        ));
    }
    let first = content.find(&input.old_string).unwrap_or(0);
    let updated = if replace_all {
        content.replace(&input.old_string, &input.new_string)
    } else {
        content.replacen(&input.old_string, &input.new_string, 1)
    };
    let (mut file, _) = tri!(ws.create_file(&path));
    tri!(
        file.write_all(updated.as_bytes())
            .map_err(|e| io_message(&display, &e))
    );
    // Show the edited region of the first replacement, numbered like `read`.
    let first_line = content[..first].matches('\n').count() + 1;
    let new_lines = input.new_string.matches('\n').count();
    let from = first_line.saturating_sub(3).max(1);
    let to = first_line + new_lines + 3;
    let mut snippet = String::new();
    for (i, l) in updated
        .lines()
        .enumerate()
        .skip(from - 1)
        .take(to + 1 - from)
    {
        let (shown, cut) = cut_chars(l, READ_LINE_CHARS);
        snippet.push_str(&format!(
            "{:>6}\t{shown}{}\n",
            i + 1,
            if cut { " … [line cut]" } else { "" }
        ));
    }
    let what = if count == 1 {
        "1 occurrence".to_string()
    } else {
        format!("{count} occurrences")
    };
    ToolOutput::text(format!("Edited {display}: replaced {what}.\n{snippet}"))
}

/// What a walk reports for each entry.
struct Entry<'a> {
    /// Relative to the walk's base.
    rel: &'a Path,
    parent: &'a Dir,
    name: &'a OsStr,
    file_type: FileType,
}

struct Walker {
    visited: usize,
    stopped: bool,
    gitignore: bool,
    ignores: Vec<Gitignore>,
}

impl Walker {
    fn new(gitignore: bool) -> Self {
        Walker {
            visited: 0,
            stopped: false,
            gitignore,
            ignores: Vec::new(),
        }
    }

    /// Loads the `.gitignore` files of the workspace root and every directory down to
    /// (not including) `base`, as git would apply them.
    fn load_ancestors(&mut self, ws: &Workspace, base: &WsPath) {
        if !self.gitignore {
            return;
        }
        let mut at = base.top();
        let parts = base.components().to_vec();
        for part in parts {
            if let Ok(d) = ws.dir_of(&at).open_dir(at.rel())
                && let Some(gi) = load_gitignore(&d, &at)
            {
                self.ignores.push(gi);
            }
            at = at.join(part);
        }
    }

    fn ignored(&self, path: &WsPath, is_dir: bool) -> bool {
        let full = PathBuf::from(path.display());
        for gi in self.ignores.iter().rev() {
            let m = gi.matched(&full, is_dir);
            if m.is_ignore() {
                return true;
            }
            if m.is_whitelist() {
                return false;
            }
        }
        false
    }

    /// Depth-first, entries in name order; `visit` returns false to stop the walk.
    fn walk(
        &mut self,
        dir: &Dir,
        at: &WsPath,
        rel: &Path,
        depth: usize,
        visit: &mut dyn FnMut(&Entry) -> bool,
    ) {
        if self.stopped || depth > WALK_MAX_DEPTH {
            return;
        }
        let pushed = if self.gitignore {
            match load_gitignore(dir, at) {
                Some(gi) => {
                    self.ignores.push(gi);
                    true
                }
                None => false,
            }
        } else {
            false
        };
        let mut entries: Vec<(std::ffi::OsString, FileType)> = match dir.entries() {
            Ok(it) => it
                .flatten()
                .filter_map(|e| e.file_type().ok().map(|t| (e.file_name(), t)))
                .collect(),
            Err(_) => Vec::new(),
        };
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, file_type) in entries {
            self.visited += 1;
            if self.visited > WALK_MAX_ENTRIES {
                self.stopped = true;
                break;
            }
            if file_type.is_dir() && name == ".git" {
                continue;
            }
            let child_at = at.join(name.clone());
            if self.gitignore && self.ignored(&child_at, file_type.is_dir()) {
                continue;
            }
            let child_rel = rel.join(&name);
            let entry = Entry {
                rel: &child_rel,
                parent: dir,
                name: &name,
                file_type,
            };
            if !visit(&entry) {
                self.stopped = true;
                break;
            }
            if file_type.is_dir() {
                // Opened beneath `dir`: a directory swapped for a symlink cannot lead out.
                if let Ok(sub) = dir.open_dir(&name) {
                    self.walk(&sub, &child_at, &child_rel, depth + 1, visit);
                }
                if self.stopped {
                    break;
                }
            }
        }
        if pushed {
            self.ignores.pop();
        }
    }
}

fn load_gitignore(dir: &Dir, at: &WsPath) -> Option<Gitignore> {
    let mut f = dir.open_with(".gitignore", &nonblocking_read()).ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    (&mut f).take(1 << 20).read_to_string(&mut text).ok()?;
    let mut b = GitignoreBuilder::new(at.display());
    for line in text.lines() {
        let _ = b.add_line(None, line);
    }
    b.build().ok()
}

/// The directory a glob or grep starts from: `path` (default `/workspace`).
fn search_base(ws: &Workspace, path: Option<&str>) -> Result<WsPath, String> {
    match path {
        None => Ok(WsPath::root()),
        Some(p) if p.trim().is_empty() => Ok(WsPath::root()),
        Some(p) => ws.resolve(p),
    }
}

pub(crate) fn glob(ws: &Workspace, input: GlobInput, limit_chars: usize) -> ToolOutput {
    let mut base = tri!(search_base(ws, input.path.as_deref()));
    let mut pattern = input.pattern.trim().to_string();
    if pattern.is_empty() {
        return ToolOutput::error("pattern is empty");
    }
    if pattern.starts_with('/') {
        match pattern.strip_prefix("/workspace/") {
            Some(rest) => {
                pattern = rest.to_string();
                base = WsPath::root();
            }
            None => {
                return ToolOutput::error(format!(
                    "{pattern} is outside /workspace; glob patterns are relative to the search path or under /workspace"
                ));
            }
        }
    }
    let matcher = match GlobBuilder::new(&pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
    {
        Ok(g) => g.compile_matcher(),
        Err(e) => return ToolOutput::error(format!("invalid glob pattern {pattern:?}: {e}")),
    };
    let dir = match ws.dir_of(&base).open_dir(base.rel()) {
        Ok(d) => d,
        Err(e) => return ToolOutput::error(io_message(&base.display(), &e)),
    };
    let mut found: Vec<(SystemTime, String)> = Vec::new();
    let mut walker = Walker::new(false);
    walker.walk(&dir, &base, Path::new(""), 0, &mut |e| {
        if !e.file_type.is_dir() && matcher.is_match(e.rel) {
            let mtime = e
                .parent
                .symlink_metadata(e.name)
                .and_then(|m| m.modified())
                .map(|t| t.into_std())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            found.push((mtime, base.display() + "/" + &e.rel.to_string_lossy()));
        }
        true
    });
    if found.is_empty() {
        let more = if walker.stopped {
            format!(" (the search stopped after {WALK_MAX_ENTRIES} entries)")
        } else {
            String::new()
        };
        return ToolOutput::text(format!("No files found{more}."));
    }
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let total = found.len();
    let mut out = String::new();
    let mut shown = 0;
    for (_, p) in &found {
        if shown >= GLOB_MAX_RESULTS || out.len() + p.len() + 1 > limit_chars {
            break;
        }
        out.push_str(p);
        out.push('\n');
        shown += 1;
    }
    if shown < total {
        out.push_str(&format!("\n[Showing the {shown} most recently modified of {total} files; narrow the pattern or path to see others.]"));
    }
    if walker.stopped {
        out.push_str(&format!(
            "\n[The search stopped after {WALK_MAX_ENTRIES} entries; narrow the path.]"
        ));
    }
    ToolOutput::text(out)
}

pub(crate) fn grep(ws: &Workspace, input: GrepInput, limit_chars: usize) -> ToolOutput {
    let regex = match regex::bytes::RegexBuilder::new(&input.pattern)
        .size_limit(50 << 20)
        .build()
    {
        Ok(r) => r,
        Err(e) => return ToolOutput::error(format!("invalid regular expression: {e}")),
    };
    let base = tri!(search_base(ws, input.path.as_deref()));
    let mut out = String::new();
    let mut lines = 0usize;
    let mut full = false;
    let mut skipped_large = 0usize;
    let mut search = |parent: &Dir, name: &OsStr, shown: &str| -> bool {
        let Ok(file) = parent.open_with(name, &nonblocking_read()) else {
            return true;
        };
        let Ok(meta) = file.metadata() else {
            return true;
        };
        if !meta.is_file() {
            return true;
        }
        if meta.len() > GREP_MAX_FILE_BYTES {
            skipped_large += 1;
            return true;
        }
        let mut reader = BufReader::with_capacity(64 * 1024, file.into_std());
        if reader
            .fill_buf()
            .map(|b| b[..b.len().min(SNIFF_BYTES)].contains(&0))
            .unwrap_or(true)
        {
            return true; // binary
        }
        let mut line = Vec::new();
        let mut n = 0u64;
        loop {
            line.clear();
            match read_line_capped(&mut reader, &mut line, GREP_LINE_KEEP_BYTES) {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
            n += 1;
            strip_eol(&mut line);
            if !regex.is_match(&line) {
                continue;
            }
            let text = String::from_utf8_lossy(&line);
            let (cut, was_cut) = cut_chars(&text, GREP_LINE_CHARS);
            let entry = format!("{shown}:{n}:{cut}{}\n", if was_cut { " …" } else { "" });
            if lines >= GREP_MAX_LINES || out.len() + entry.len() > limit_chars {
                full = true;
                return false;
            }
            out.push_str(&entry);
            lines += 1;
        }
    };
    let mut walker = Walker::new(true);
    // A single file.
    if !base.is_root()
        && let Ok(m) = ws.dir_of(&base).metadata(base.rel())
        && m.is_file()
    {
        let parent = base.parent().unwrap_or_else(|| base.top());
        let name = base.file_name().cloned().unwrap_or_default();
        match ws.dir_of(&parent).open_dir(parent.rel()) {
            Ok(d) => {
                search(&d, &name, &base.display());
            }
            Err(e) => return ToolOutput::error(io_message(&parent.display(), &e)),
        }
        return grep_result(out, lines, full, false, skipped_large);
    }
    let dir = match ws.dir_of(&base).open_dir(base.rel()) {
        Ok(d) => d,
        Err(e) => return ToolOutput::error(io_message(&base.display(), &e)),
    };
    walker.load_ancestors(ws, &base);
    walker.walk(&dir, &base, Path::new(""), 0, &mut |e| {
        if !e.file_type.is_file() {
            return true;
        }
        let shown = base.display() + "/" + &e.rel.to_string_lossy();
        search(e.parent, e.name, &shown)
    });
    let stopped = walker.stopped && !full;
    grep_result(out, lines, full, stopped, skipped_large)
}

fn grep_result(
    mut out: String,
    lines: usize,
    full: bool,
    stopped: bool,
    skipped_large: usize,
) -> ToolOutput {
    if lines == 0 && !stopped {
        out.push_str("No matches found.");
    }
    if full {
        out.push_str(&format!("\n[Showing the first {lines} matching lines; narrow the pattern or path to see others.]"));
    }
    if stopped {
        out.push_str(&format!(
            "\n[The search stopped after {WALK_MAX_ENTRIES} entries; narrow the path.]"
        ));
    }
    if skipped_large > 0 {
        out.push_str(&format!(
            "\n[{skipped_large} files larger than {GREP_MAX_FILE_BYTES} bytes were not searched.]"
        ));
    }
    ToolOutput::text(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_kept_only_up_to_the_cap() {
        let data = format!("{}\nshort\n{}", "a".repeat(100), "b".repeat(50));
        let mut r = BufReader::with_capacity(16, data.as_bytes());
        let mut line = Vec::new();
        assert_eq!(read_line_capped(&mut r, &mut line, 10).unwrap(), 101);
        assert_eq!(line, b"aaaaaaaaaa\n");
        line.clear();
        assert_eq!(read_line_capped(&mut r, &mut line, 10).unwrap(), 6);
        assert_eq!(line, b"short\n");
        line.clear();
        assert_eq!(read_line_capped(&mut r, &mut line, 10).unwrap(), 50);
        assert_eq!(line, b"bbbbbbbbbb");
        line.clear();
        assert_eq!(read_line_capped(&mut r, &mut line, 10).unwrap(), 0);
    }
}
