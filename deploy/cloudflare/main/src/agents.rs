//! `/v1/agents…` on Workers: the core's agent service over D1, the same verbs, rules and
//! wire shapes as the native server's `http/agents.rs`.

use openma_core::agents::Agents;
use openma_core::platform::ListParams;
use openma_core::TenantId;
use openma_types::ListPage;
use openma_types::query::{ArchivedParam, CreatedFilter, PageParams, VersionParam};
use worker::{Method, Response};

use crate::adapters::{WorkerClock, WorkerIds};
use crate::api::{ApiRequest, json};
use openma_worker_common::files::WorkerFiles;
use crate::d1::D1;
use crate::errors::ApiError;

/// Serves `rest` (the path after `/v1/agents`), or `None` when no agent route matches.
pub async fn route(req: &mut ApiRequest, env: &worker::Env, db: &D1, tenant: &TenantId, rest: &[&str]) -> Option<Result<Response, ApiError>> {
    let skills = match WorkerFiles::new(env) {
        Ok(s) => s,
        Err(e) => return Some(Err(e)),
    };
    let agents = Agents { store: db, clock: &WorkerClock, ids: &WorkerIds, capabilities: openma_worker_common::capabilities(env), skills: &skills, announcer: db };
    let method = req.method();
    let result = match (method, rest) {
        (Method::Post, []) => async { json(agents.create(tenant, &req.body().await?).await?) }.await,
        (Method::Get, []) => list(req, &agents, tenant).await,
        (Method::Get, [id]) => async {
            let v: VersionParam = req.query()?;
            json(agents.get(tenant, id, v.version).await?)
        }
        .await,
        (Method::Post, [id]) => async { json(agents.update(tenant, id, &req.body().await?).await?) }.await,
        (Method::Post, [id, "archive"]) => async { json(agents.archive(tenant, id).await?) }.await,
        (Method::Get, [id, "versions"]) => async {
            let page: PageParams = req.query()?;
            let p = agents.list_versions(tenant, id, page.limit, page.page.as_deref()).await?;
            json(ListPage { data: p.data, next_page: p.next_page })
        }
        .await,
        _ => return None,
    };
    Some(result)
}

async fn list(req: &ApiRequest, agents: &Agents<'_>, tenant: &TenantId) -> Result<Response, ApiError> {
    let page: PageParams = req.query()?;
    let archived: ArchivedParam = req.query()?;
    let created: CreatedFilter = req.query()?;
    let p = agents.list(tenant, &ListParams::from_query(page, &archived, &created, None)).await?;
    json(ListPage { data: p.data, next_page: p.next_page })
}
