//! The HTTP+SSE transport of MCP's 2024-11-05 revision, for servers that predate streamable
//! HTTP: a `GET` opens an event stream whose first `endpoint` event names where to `POST`
//! messages; answers come back as `message` events on the stream. Used only after a
//! streamable HTTP handshake failed, as the MCP specification's compatibility note says.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use rmcp::RoleClient;
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::sync::mpsc;

/// Why the legacy transport could not be opened.
pub enum OpenError {
    /// HTTP 401/403.
    Refused,
    Failed(String),
}

pub struct LegacySse {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    token: Option<String>,
    rx: mpsc::Receiver<RxJsonRpcMessage<RoleClient>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for LegacySse {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl LegacySse {
    /// Opens the event stream at `url` and waits for its `endpoint` event.
    pub async fn open(http: reqwest::Client, url: reqwest::Url, token: Option<String>, timeout: Duration) -> Result<LegacySse, OpenError> {
        let mut req = http.get(url.clone()).header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        let resp = tokio::time::timeout(timeout, req.send())
            .await
            .map_err(|_| OpenError::Failed("no answer to the event-stream request".into()))?
            .map_err(|e| OpenError::Failed(e.without_url().to_string()))?;
        match resp.status().as_u16() {
            401 | 403 => return Err(OpenError::Refused),
            s if !(200..300).contains(&s) => return Err(OpenError::Failed(format!("the event-stream request answered HTTP {s}"))),
            _ => {}
        }
        let mut events = resp.bytes_stream().eventsource();
        let endpoint = loop {
            let next = tokio::time::timeout(timeout, events.next())
                .await
                .map_err(|_| OpenError::Failed("no `endpoint` event on the stream".into()))?;
            match next {
                Some(Ok(ev)) if ev.event == "endpoint" => {
                    break url.join(ev.data.trim()).map_err(|e| OpenError::Failed(format!("a bad `endpoint` event: {e}")))?;
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(OpenError::Failed(format!("the event stream failed: {e}"))),
                None => return Err(OpenError::Failed("the event stream ended before its `endpoint` event".into())),
            }
        };
        if endpoint.origin() != url.origin() {
            return Err(OpenError::Failed("the `endpoint` event names another origin".into()));
        }
        let (tx, rx) = mpsc::channel(64);
        let reader = tokio::spawn(async move {
            while let Some(Ok(ev)) = events.next().await {
                if ev.event != "message" && !ev.event.is_empty() {
                    continue;
                }
                match serde_json::from_str::<RxJsonRpcMessage<RoleClient>>(&ev.data) {
                    Ok(msg) => {
                        if tx.send(msg).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "an MCP message that is not JSON-RPC was skipped"),
                }
            }
        });
        Ok(LegacySse { http, endpoint, token, rx, reader })
    }
}

impl Transport<RoleClient> for LegacySse {
    type Error = std::io::Error;

    fn send(&mut self, item: TxJsonRpcMessage<RoleClient>) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let (http, endpoint, token) = (self.http.clone(), self.endpoint.clone(), self.token.clone());
        async move {
            let mut req = http.post(endpoint).json(&item);
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.map_err(|e| std::io::Error::other(e.without_url().to_string()))?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(std::io::Error::other(format!("the MCP server answered HTTP {}", resp.status().as_u16())))
            }
        }
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
        self.rx.recv()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.reader.abort();
        Ok(())
    }
}
