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
    target: SpillTarget,
}

pub(crate) struct Captured {
    /// What the model sees; when the output was cut, it names the file holding all of it.
    pub text: String,
}

impl Capture {
    pub fn new(limit_chars: usize, target: SpillTarget) -> Self {
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
        if let Some((file, _)) = &mut self.spill
            && let Err(e) = file.write_all(data)
        {
            self.spill_error = Some(e.to_string());
            self.spill = None;
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
            Ok((mut file, display)) => match file.write_all(&self.head) {
                Ok(()) => self.spill = Some((file, display)),
                Err(e) => self.spill_error = Some(e.to_string()),
            },
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
