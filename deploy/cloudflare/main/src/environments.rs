//! `/v1/environments…` on Workers: the core's environment service over D1, the same verbs,
//! rules and wire shapes as the native server's `http/environments.rs`. Its `/build`
//! extension reports the one layer a host builds for an environment; on the Workers each
//! session's sandbox server builds its own, so there is none to report: `/build` is refused
//! with a stable `400 unsupported_feature` (the session's first tool reports a failed build).

use openma_core::environments::Environments;
use openma_core::platform::ListParams;
use openma_core::TenantId;
use openma_types::environments::EnvironmentLimits;
use openma_types::query::{ArchivedParam, CreatedFilter, PageParams};
use openma_types::{Deleted, ListPage};
use worker::{Method, Response};

use crate::adapters::{WorkerClock, WorkerIds};
use crate::api::{ApiRequest, json};
use crate::d1::D1;
use crate::errors::ApiError;

/// Serves `rest` (the path after `/v1/environments`), or `None` when no route matches.
pub async fn route(req: &mut ApiRequest, db: &D1, tenant: &TenantId, rest: &[&str]) -> Option<Result<Response, ApiError>> {
    // The Containers image runs the sandbox server at its default limits.
    let limits = EnvironmentLimits::SANDBOX_DEFAULTS;
    let envs = Environments { store: db, clock: &WorkerClock, ids: &WorkerIds, sandbox_limits: Some(&limits), announcer: db };
    let result = match (req.method(), rest) {
        (Method::Post, []) => async { json(envs.create(tenant, &req.body().await?).await?) }.await,
        (Method::Get, []) => async {
            let page: PageParams = req.query()?;
            let archived: ArchivedParam = req.query()?;
            let p = envs.list(tenant, &ListParams::from_query(page, &archived, &CreatedFilter::default(), None)).await?;
            json(ListPage { data: p.data, next_page: p.next_page })
        }
        .await,
        (Method::Get, [id]) => async { json(envs.get(tenant, id).await?) }.await,
        (Method::Post, [id]) => async { json(envs.update(tenant, id, &req.body().await?).await?) }.await,
        (Method::Delete, [id]) => async {
            envs.delete(tenant, id).await?;
            json(Deleted { id: (*id).to_owned(), kind: "environment_deleted".into() })
        }
        .await,
        (Method::Post, [id, "archive"]) => async { json(envs.archive(tenant, id).await?) }.await,
        (Method::Get, [id, "build"]) => async {
            envs.get(tenant, id).await?;
            Err(openma_core::DomainError::unsupported("`/build` on the Cloudflare Workers deployment (each session's container builds the packages' layer itself; its first tool reports a failed build)").into())
        }
        .await,
        _ => return None,
    };
    Some(result)
}
