//! Capped command output: the model sees at most `output_chars` characters (the head and
//! the tail of long output); the whole output is streamed to a file in the workspace and
//! the result names it. Memory stays bounded however much a command prints.

use std::io::Write;
use std::path::PathBuf;

use crate::paths::Workspace;

/// Where long output goes: `/workspace/.openma/outputs/<ulid>.txt`.
#[derive(Clone, Debug)]
pub(crate) struct SpillTarget {
    pub workspace: PathBuf,
    pub uid: Option<u32>,
}

impl SpillTarget {
    fn create(&self) -> Result<(std::fs::File, String), String> {
        let ws = Workspace::open(&self.workspace, self.uid).map_err(|e| e.to_string())?;
        let path = ws.resolve(&format!(".openma/outputs/{}.txt", ulid::Ulid::new()))?;
        ws.create_parents(&path)?;
        let (file, _) = ws.create_file(&path)?;
        Ok((file.into_std(), path.display()))
    }
}

pub(crate) struct Capture {
    limit_chars: usize,
    /// Bytes kept whole: output up to this size never needs a file to decide its length.
    mem_cap: usize,
    head: Vec<u8>,
    tail: Vec<u8>,
    tail_cap: usize,
    total: u64,
    spill: Option<(std::fs::File, String)>,
    spill_error: Option<String>,
    /// The saved file stops growing here (a background `yes` must not fill the host's disk).
    spill_max: u64,
    spilled_bytes: u64,
    target: SpillTarget,
}

pub(crate) struct Captured {
    /// What the model sees; when the output was cut, it names the file holding all of it.
    pub text: String,
}

impl Capture {
    pub fn new(limit_chars: usize, spill_max: u64, target: SpillTarget) -> Self {
        let limit_chars = limit_chars.max(1000);
        Capture {
            limit_chars,
            mem_cap: limit_chars * 4,
            head: Vec::new(),
            tail: Vec::new(),
            tail_cap: limit_chars * 4,
            total: 0,
            spill: None,
            spill_error: None,
            spill_max,
            spilled_bytes: 0,
            target,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.total += data.len() as u64;
        let spilling = self.spill.is_some() || self.spill_error.is_some();
        if !spilling && self.head.len() + data.len() <= self.mem_cap {
            self.head.extend_from_slice(data);
            return;
        }
        if !spilling {
            self.start_spill();
        }
        if let Some((file, _)) = &mut self.spill {
            let take =
                (self.spill_max.saturating_sub(self.spilled_bytes)).min(data.len() as u64) as usize;
            if let Err(e) = file.write_all(&data[..take]) {
                self.spill_error = Some(e.to_string());
                self.spill = None;
            }
            self.spilled_bytes += take as u64;
        }
        let room = self.mem_cap.saturating_sub(self.head.len()).min(data.len());
        self.head.extend_from_slice(&data[..room]);
        self.tail.extend_from_slice(&data[room..]);
        if self.tail.len() > 2 * self.tail_cap {
            let cut = self.tail.len() - self.tail_cap;
            self.tail.drain(..cut);
        }
    }

    fn start_spill(&mut self) {
        match self.target.create() {
            Ok((mut file, display)) => {
                let take = (self.spill_max.min(self.head.len() as u64)) as usize;
                match file.write_all(&self.head[..take]) {
                    Ok(()) => {
                        self.spilled_bytes = take as u64;
                        self.spill = Some((file, display));
                    }
                    Err(e) => self.spill_error = Some(e.to_string()),
                }
            }
            Err(e) => self.spill_error = Some(e),
        }
    }

    pub fn finish(mut self) -> Captured {
        let spilled = self.spill.is_some() || self.spill_error.is_some();
        if !spilled {
            let text = String::from_utf8_lossy(&self.head).into_owned();
            if text.chars().count() <= self.limit_chars {
                return Captured { text };
            }
            self.start_spill();
        }
        if let Some((file, _)) = &mut self.spill
            && let Err(e) = file.flush()
        {
            self.spill_error = Some(e.to_string());
        }
        let head_chars = self.limit_chars * 3 / 4;
        let tail_chars = self.limit_chars / 4 - 200;
        let head_text = String::from_utf8_lossy(&self.head);
        let head: String = head_text.chars().take(head_chars).collect();
        // The tail: whatever follows the shown head, of which the last `tail_chars`.
        let rest: String = if self.tail.is_empty() {
            head_text.chars().skip(head_chars).collect()
        } else {
            // Skip a split UTF-8 sequence at the cut.
            let start = self
                .tail
                .iter()
                .position(|b| (*b & 0xC0) != 0x80)
                .unwrap_or(0);
            String::from_utf8_lossy(&self.tail[start..]).into_owned()
        };
        let rest_count = rest.chars().count();
        let tail: String = rest
            .chars()
            .skip(rest_count.saturating_sub(tail_chars))
            .collect();
        let saved_to = self.spill.as_ref().map(|(_, d)| d.clone());
        let note = match (&saved_to, &self.spill_error) {
            (Some(path), None) if self.spilled_bytes < self.total => format!(
                "[The output was too long ({} bytes); only its beginning and end are shown. Its first {} bytes are saved in {path}.]",
                self.total, self.spilled_bytes
            ),
            (Some(path), None) => format!(
                "[The output was too long ({} bytes); only its beginning and end are shown. The full output is saved in {path}.]",
                self.total
            ),
            (_, Some(e)) => format!(
                "[The output was too long ({} bytes); only its beginning and end are shown. It could not be saved: {e}.]",
                self.total
            ),
            (None, None) => String::new(),
        };
        let text = format!("{head}\n\n[... output truncated ...]\n\n{tail}\n\n{note}");
        Captured { text }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> (PathBuf, SpillTarget) {
        let dir = std::env::temp_dir().join(format!("openma-output-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        (
            dir.clone(),
            SpillTarget {
                workspace: dir,
                uid: None,
            },
        )
    }

    fn saved_path(dir: &std::path::Path, text: &str) -> PathBuf {
        let at = text.find("/workspace/").unwrap();
        let p = text[at..]
            .split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches(['.', ']']);
        dir.join(p.strip_prefix("/workspace/").unwrap())
    }

    #[test]
    fn short_output_is_kept_whole() {
        let (dir, t) = target();
        let mut c = Capture::new(1000, 1 << 20, t);
        c.push("héllo\n".as_bytes());
        assert_eq!(c.finish().text, "héllo\n");
        assert!(!dir.join(".openma").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn long_output_shows_head_and_tail_and_saves_everything() {
        let (dir, t) = target();
        let mut c = Capture::new(1000, 1 << 20, t);
        for i in 0..2000 {
            c.push(format!("line {i}\n").as_bytes());
        }
        let text = c.finish().text;
        assert!(
            text.starts_with("line 0\n") && text.contains("line 1999\n"),
            "{text}"
        );
        assert!(text.chars().count() < 1300, "{}", text.chars().count());
        let saved = std::fs::read_to_string(saved_path(&dir, &text)).unwrap();
        assert_eq!(saved.lines().count(), 2000);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_saved_file_stops_at_its_limit() {
        let (dir, t) = target();
        let mut c = Capture::new(1000, 10_000, t);
        for _ in 0..100 {
            c.push(&[b'x'; 1000]);
        }
        let text = c.finish().text;
        assert!(text.contains("first 10000 bytes"), "{text}");
        assert_eq!(
            std::fs::metadata(saved_path(&dir, &text)).unwrap().len(),
            10_000
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
