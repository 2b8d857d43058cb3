//! `/v1/integrations` on Workers (openma extension): agents published to Slack, GitHub or
//! Linear, through the core's integration service over D1 — the native server's verbs,
//! rules and wire shapes (`http/integrations.rs`). The signing secret and the credential are
//! sealed with the verified root secret and never returned.
//!
//! The providers' deliveries (`/integrations/{provider}/{id}/…`) are served by
//! `openma-integrations`; this worker passes them on over its `INTEGRATIONS` service
//! binding, so one hostname serves both.

use openma_core::integrations::Integrations;
use openma_core::platform::ListParams;
use openma_core::{DomainError, TenantId};
use openma_types::integrations::CreateIntegrationRequest;
use openma_types::query::{ArchivedParam, CreatedFilter, PageParams};
use openma_types::{Deleted, ListPage};
use worker::{Env, Method, Request, Response};

use crate::adapters::{WorkerClock, WorkerIds};
use crate::api::{ApiRequest, json};
use crate::d1::D1;
use crate::errors::ApiError;
use openma_worker_common::root_secret;

/// The service binding to `openma-integrations`.
const INTEGRATIONS: &str = "INTEGRATIONS";

/// Serves `rest` (the path after `/v1/integrations`), or `None` when no route matches.
pub async fn route(req: &mut ApiRequest, env: &Env, db: &D1, tenant: &TenantId, rest: &[&str]) -> Option<Result<Response, ApiError>> {
    let method = req.method();
    // only creating seals secrets
    let secrets = match (&method, rest) {
        (Method::Post, []) => match root_secret::secret_box(env).await {
            Ok(b) => Some(b),
            Err(e) => return Some(Err(e)),
        },
        _ => None,
    };
    let integrations = Integrations { store: db, agents: db, environments: db, secrets: secrets.as_deref(), clock: &WorkerClock, ids: &WorkerIds };
    let result = match (method, rest) {
        (Method::Post, []) => async {
            let body: CreateIntegrationRequest = req.body().await?;
            if let Some(url) = &body.api_base_url {
                // as natively: the workers will call it with the integration's credential
                openma_core::web::check_destination(url, openma_worker_common::allow_private_addresses(env)).map_err(|m| DomainError::invalid(format!("`api_base_url`: {m}")))?;
            }
            json(integrations.create(tenant, &body).await?)
        }
        .await,
        (Method::Get, []) => async {
            let page: PageParams = req.query()?;
            let p = integrations.list(tenant, &ListParams::from_query(page, &ArchivedParam::default(), &CreatedFilter::default(), None)).await?;
            json(ListPage { data: p.data, next_page: p.next_page })
        }
        .await,
        (Method::Get, [id]) => async { json(integrations.get(tenant, id).await?) }.await,
        (Method::Delete, [id]) => async {
            integrations.delete(tenant, id).await?;
            json(Deleted { id: (*id).to_owned(), kind: "integration_deleted".into() })
        }
        .await,
        _ => return None,
    };
    Some(result)
}

/// A provider's delivery, passed on to `openma-integrations` as it came.
pub async fn forward(req: Request, env: &Env) -> Result<Response, ApiError> {
    let service = env.service(INTEGRATIONS).map_err(|_| ApiError::not_found("this deployment has no openma-integrations (`INTEGRATIONS` binding)"))?;
    let answer = service.fetch_request(req).await.map_err(|e| ApiError::new(502, format!("openma-integrations: {e}")))?;
    // a subrequest's headers are immutable: the answer is copied (its body is small)
    let mut answer = answer;
    let status = answer.status_code();
    let content_type = answer.headers().get("content-type").ok().flatten();
    let body = answer.bytes().await.map_err(|e| ApiError::new(502, format!("openma-integrations: {e}")))?;
    let mut out = Response::from_bytes(body).map_err(|e| ApiError::new(500, e.to_string()))?.with_status(status);
    if let Some(ct) = content_type {
        out.headers_mut().set("content-type", &ct).map_err(|e| ApiError::new(500, e.to_string()))?;
    }
    Ok(out)
}
