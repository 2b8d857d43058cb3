//! From response bytes to [`ModelEvent`]s: SSE framing (eventsource-stream), an idle
//! timeout between events, and a provider-specific [`Decoder`]. The pipeline, not the
//! decoders, decides what a premature end means, so both providers report cuts alike.

use std::collections::VecDeque;
use std::fmt::Display;
use std::time::Duration;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use openma_core::model::{ModelError, ModelEvent, ModelStream};

use crate::errors;

/// Turns one provider's SSE events into model events.
pub(crate) trait Decoder: Send + 'static {
    /// Consume one SSE event, pushing what it completes onto `out`. An error ends the
    /// stream after the events already pushed.
    fn event(&mut self, event: &Event, out: &mut Vec<ModelEvent>) -> Result<(), ModelError>;

    /// True once the provider said the message is over (`message_stop`, `[DONE]`); the
    /// rest of the body is not read.
    fn is_complete(&self) -> bool;
}

struct State<E, D> {
    events: E,
    decoder: D,
    pending: VecDeque<Result<ModelEvent, ModelError>>,
    ended: bool,
}

/// Decode an SSE byte stream. Ends with the decoder's last event, or with exactly one
/// error: `Network` when nothing arrived for `idle`, `StreamCut` when the body ended or
/// broke before the decoder saw the end of the message.
pub(crate) fn decode<S, B, E, D>(provider: &'static str, bytes: S, decoder: D, idle: Duration) -> ModelStream
where
    S: Stream<Item = Result<B, E>> + Send + 'static,
    B: AsRef<[u8]> + Send + 'static,
    E: Display + Send + 'static,
    D: Decoder,
{
    let state = State { events: Box::pin(bytes.eventsource()), decoder, pending: VecDeque::new(), ended: false };
    futures::stream::unfold(state, move |mut st| async move {
        loop {
            if let Some(item) = st.pending.pop_front() {
                return Some((item, st));
            }
            if st.ended || st.decoder.is_complete() {
                return None;
            }
            let failure = match within(idle, st.events.next()).await {
                Err(()) => errors::idle_timeout(provider, idle, "stream data"),
                Ok(None) => errors::stream_cut(provider, "the connection closed"),
                Ok(Some(Err(EventStreamError::Transport(e)))) => errors::stream_cut(provider, &e.to_string()),
                Ok(Some(Err(e))) => errors::malformed(provider, e),
                Ok(Some(Ok(event))) => {
                    let mut out = Vec::new();
                    let result = st.decoder.event(&event, &mut out);
                    st.pending.extend(out.into_iter().map(Ok));
                    match result {
                        Ok(()) => continue,
                        Err(e) => e,
                    }
                }
            };
            st.pending.push_back(Err(failure));
            st.ended = true;
        }
    })
    .boxed()
}

/// `next` unless `idle` passes first. Without the `client` feature there is no timer (the
/// Workers build has no tokio); there the caller bounds the wait by its own means.
#[cfg(feature = "client")]
async fn within<T>(idle: Duration, next: impl Future<Output = T>) -> Result<T, ()> {
    tokio::time::timeout(idle, next).await.map_err(|_| ())
}

#[cfg(not(feature = "client"))]
async fn within<T>(_idle: Duration, next: impl Future<Output = T>) -> Result<T, ()> {
    Ok(next.await)
}

/// What the provider decoders' tests share: running a body given as chunks, and the
/// rule that how the body is chunked never changes the events.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Decodes `chunks` as one response body.
    pub(crate) async fn run<D: Decoder>(
        provider: &'static str,
        decoder: D,
        chunks: Vec<Vec<u8>>,
    ) -> Vec<Result<ModelEvent, ModelError>> {
        let bytes = futures::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
        decode(provider, bytes, decoder, Duration::from_secs(5)).collect().await
    }

    /// Decodes `chunks`, expecting no error.
    pub(crate) async fn run_ok<D: Decoder>(provider: &'static str, decoder: D, chunks: Vec<Vec<u8>>) -> Vec<ModelEvent> {
        run(provider, decoder, chunks).await.into_iter().map(|r| r.expect("no error")).collect()
    }

    /// `fixture` decodes to `expected` whole, split at every byte (inside event names,
    /// JSON and multi-byte UTF-8) and one byte at a time.
    pub(crate) async fn assert_chunking_never_matters<D: Decoder + Default>(
        provider: &'static str,
        fixture: &str,
        expected: &[ModelEvent],
    ) {
        let bytes = fixture.as_bytes();
        assert_eq!(run_ok(provider, D::default(), vec![bytes.to_vec()]).await, expected, "whole");
        for cut in 1..bytes.len() {
            let events = run_ok(provider, D::default(), vec![bytes[..cut].to_vec(), bytes[cut..].to_vec()]).await;
            assert_eq!(events, expected, "split at byte {cut}");
        }
        let chunks = bytes.iter().map(|b| vec![*b]).collect();
        assert_eq!(run_ok(provider, D::default(), chunks).await, expected, "one byte at a time");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use openma_core::model::{StopReason, TransientKind, Usage};

    use super::*;

    /// Finishes on an event named `end`; every other event becomes a text delta.
    #[derive(Default)]
    struct Echo {
        done: bool,
    }

    impl Decoder for Echo {
        fn event(&mut self, event: &Event, out: &mut Vec<ModelEvent>) -> Result<(), ModelError> {
            if event.event == "end" {
                self.done = true;
                out.push(ModelEvent::Finished { stop_reason: StopReason::EndTurn, usage: Usage::default() });
            } else {
                out.push(ModelEvent::TextDelta { index: 0, text: event.data.clone() });
            }
            Ok(())
        }

        fn is_complete(&self) -> bool {
            self.done
        }
    }

    fn kind(item: &Result<ModelEvent, ModelError>) -> Option<TransientKind> {
        match item {
            Err(ModelError::Transient { kind, .. }) => Some(*kind),
            _ => None,
        }
    }

    #[tokio::test]
    async fn stops_reading_after_the_end() {
        // The source would block forever after `end`; the decoder's word is final.
        let bytes =
            futures::stream::iter(vec![Ok::<_, std::io::Error>(b"data: a\n\nevent: end\ndata: x\n\n".to_vec())])
                .chain(futures::stream::pending());
        let items: Vec<_> = decode("p", bytes, Echo::default(), Duration::from_secs(5)).collect().await;
        assert_eq!(items.len(), 2);
        assert!(matches!(items[1], Ok(ModelEvent::Finished { .. })));
    }

    #[tokio::test]
    async fn silence_is_a_network_error() {
        let bytes = futures::stream::iter(vec![Ok::<_, std::io::Error>(b"data: a\n\n".to_vec())])
            .chain(futures::stream::pending());
        let started = Instant::now();
        let items: Vec<_> = decode("p", bytes, Echo::default(), Duration::from_millis(100)).collect().await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(items.len(), 2);
        assert_eq!(kind(&items[1]), Some(TransientKind::Network));
        assert!(items[1].as_ref().unwrap_err().to_string().contains("100 ms"));
    }

    #[tokio::test]
    async fn a_broken_body_is_a_cut() {
        let bytes = futures::stream::iter(vec![
            Ok(b"data: a\n\nda".to_vec()),
            Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer")),
        ]);
        let items: Vec<_> = decode("p", bytes, Echo::default(), Duration::from_secs(5)).collect().await;
        assert_eq!(items.len(), 2);
        assert_eq!(kind(&items[1]), Some(TransientKind::StreamCut));
        assert!(items[1].as_ref().unwrap_err().to_string().contains("reset by peer"));
    }

    #[tokio::test]
    async fn invalid_utf8_is_malformed() {
        let bytes = futures::stream::iter(vec![Ok::<_, std::io::Error>(b"data: \xff\xfe\n\n".to_vec())]);
        let items: Vec<_> = decode("p", bytes, Echo::default(), Duration::from_secs(5)).collect().await;
        assert_eq!(items.len(), 1);
        assert!(items[0].as_ref().unwrap_err().to_string().contains("malformed"));
    }
}
