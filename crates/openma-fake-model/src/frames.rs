//! Streaming a rendered answer: frames sent one by one with an optional delay, or cut
//! off mid-frame by aborting the connection as a failing network would.

use std::time::Duration;

use axum::body::Body;

/// One SSE frame as sent on the wire.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Frame {
    pub text: String,
    /// Content characters (text, thinking, tool input) this frame delivers.
    pub chars: usize,
    /// Frames that tell the client the message is whole (`message_stop`, `[DONE]`, the
    /// final usage): a cut never sends them.
    pub terminal: bool,
}

impl Frame {
    /// `event: <name>` + `data: <json>` (Anthropic).
    pub fn event(name: &str, data: &serde_json::Value, chars: usize) -> Self {
        Self { text: format!("event: {name}\ndata: {data}\n\n"), chars, terminal: false }
    }

    /// `data: <payload>` only (OpenAI).
    pub fn data(payload: impl std::fmt::Display, chars: usize) -> Self {
        Self { text: format!("data: {payload}\n\n"), chars, terminal: false }
    }

    pub fn terminal(mut self) -> Self {
        self.terminal = true;
        self
    }
}

/// Pause before a cut.
const CUT_GRACE: Duration = Duration::from_millis(50);

enum Step {
    Send(String),
    Abort,
}

/// The frames to send for a cut after `limit` content characters: every frame until the
/// limit is reached, then the first half of the next content frame, then an abort.
fn cut_steps(frames: Vec<Frame>, limit: usize) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut sent = 0;
    for frame in frames {
        if frame.terminal {
            break;
        }
        if frame.chars > 0 && sent >= limit {
            let half = frame.text.char_indices().nth(frame.text.chars().count() / 2).map_or(0, |(i, _)| i);
            steps.push(Step::Send(frame.text[..half].to_owned()));
            break;
        }
        sent += frame.chars;
        steps.push(Step::Send(frame.text));
    }
    steps.push(Step::Abort);
    steps
}

/// A streaming body of `frames`, `delay` apart. With `cut_after`, the body fails
/// mid-message: hyper then drops the connection without the final chunk, so the client
/// sees a broken body rather than a clean end.
pub(crate) fn body(frames: Vec<Frame>, delay: Duration, cut_after: Option<usize>) -> Body {
    let steps = match cut_after {
        Some(limit) => cut_steps(frames, limit),
        None => frames.into_iter().map(|f| Step::Send(f.text)).collect(),
    };
    let stream = futures::stream::unfold((steps.into_iter(), true), move |(mut steps, first)| async move {
        let step = steps.next()?;
        if !first && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let item = match step {
            Step::Send(text) => Ok(text),
            Step::Abort => {
                // Let hyper flush what was sent (it writes when the body is pending), so
                // the client sees the start of the message before the connection drops.
                tokio::time::sleep(CUT_GRACE).await;
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "scripted cut"))
            }
        };
        Some((item, (steps, false)))
    });
    Body::from_stream(stream)
}

/// `text` in pieces of `size` characters (at least one piece, even for empty text).
pub(crate) fn split(text: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    chars.chunks(size.max(1)).map(|c| c.iter().collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_by_characters() {
        assert_eq!(split("héllo wörld", 4), vec!["héll", "o wö", "rld"]);
        assert_eq!(split("", 4), vec![""]);
        assert_eq!(split("ab", 0), vec!["a", "b"]);
    }

    #[test]
    fn cut_stops_inside_the_frame_after_the_limit() {
        let frames = vec![
            Frame::data("start", 0),
            Frame::data("aaaa", 4),
            Frame::data("bbbb", 4),
            Frame::data("[DONE]", 0).terminal(),
        ];
        let sent: Vec<String> = cut_steps(frames.clone(), 3)
            .into_iter()
            .filter_map(|s| match s {
                Step::Send(t) => Some(t),
                Step::Abort => None,
            })
            .collect();
        assert_eq!(sent[..2], [frames[0].text.clone(), frames[1].text.clone()]);
        assert_eq!(sent[2], frames[2].text[..frames[2].text.len() / 2]);
        // Past the content, the terminal frame is still withheld.
        assert_eq!(cut_steps(frames, 100).len(), 4);
    }
}
