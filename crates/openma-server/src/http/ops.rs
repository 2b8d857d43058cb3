//! Operations endpoints: `/health`, `/metrics`, `/v1/openapi.json`. No authentication.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::app::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when a backend is down.
    pub status: &'static str,
    pub backends: Backends,
    pub version: &'static str,
    /// Why the server is degraded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Cluster mode: this node, and the sessions it runs now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterHealth>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ClusterHealth {
    pub node_id: String,
    pub url: String,
    pub leased_sessions: usize,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Backends {
    pub db: String,
    pub blobs: String,
    pub sandbox: String,
    /// How sandboxes reach the network: `proxy` (the per-session egress proxy, see
    /// docs/security.md), with a warning when test-only resolution overrides are set.
    pub sandbox_egress: String,
}

/// Liveness and the state of every backend; 503 with a reason when one is down.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn health(State(app): State<AppState>) -> impl IntoResponse {
    let mut problems = Vec::new();
    let db = match app.platform.store.describe().await {
        Ok(d) => d,
        Err(e) => {
            problems.push(format!("database: {e}"));
            "down".to_owned()
        }
    };
    let blobs = match tokio::time::timeout(std::time::Duration::from_secs(3), app.info.blobs.probe()).await {
        Ok(Ok(())) => app.info.blobs.describe().to_owned(),
        Ok(Err(e)) => {
            problems.push(format!("blob store {}: {e}", app.info.blobs.describe()));
            "down".to_owned()
        }
        Err(_) => {
            problems.push(format!("blob store {}: no answer within 3 s", app.info.blobs.describe()));
            "down".to_owned()
        }
    };
    // a remote sandbox server comes and goes on its own: ask it now, not at start-up
    let sandbox = match &app.remote {
        Some(remote) => remote.status().await,
        None => app.info.sandbox.clone(),
    };
    let healthy = problems.is_empty();
    let body = Health {
        status: if healthy { "ok" } else { "degraded" },
        backends: Backends { db, blobs, sandbox, sandbox_egress: app.info.sandbox_egress.clone() },
        version: env!("CARGO_PKG_VERSION"),
        reason: (!healthy).then(|| problems.join("; ")),
        cluster: app.runtime.cluster().map(|c| ClusterHealth {
            node_id: c.node_id.clone(),
            url: c.url.clone(),
            leased_sessions: app.runtime.owned_sessions().len(),
        }),
    };
    (if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus metrics", content_type = "text/plain")))]
pub async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::metrics_handle().render(),
    )
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi() -> impl IntoResponse {
    Json(crate::openapi::document())
}
