//! `/v1/vaults…` on Workers: the core's vault service over D1, with credential secrets
//! sealed by the verified root secret — the same verbs, rules and wire shapes as the
//! native server's `http/vaults.rs`, `mcp_oauth_validate` included (the core's
//! `mcp_oauth` flow over `fetch`: probe the MCP server, refresh on a refusal, probe again).

use std::time::Duration;

use openma_core::mcp_oauth::OAuth;
use openma_core::platform::ListParams;
use openma_core::{Clock, IdGen, TenantId};
use openma_core::vaults::Vaults;
use openma_types::query::{ArchivedParam, CreatedFilter, PageParams};
use openma_types::{Deleted, ListPage};
use worker::{Env, Method, Response};

use crate::adapters::{WorkerClock, WorkerIds};
use crate::api::{ApiRequest, json};
use crate::d1::D1;
use crate::errors::ApiError;
use openma_worker_common::outbound::Outbound;
use openma_worker_common::root_secret;

/// How long the MCP server and the token endpoint each have to answer a validation.
const OAUTH_TIMEOUT: Duration = Duration::from_secs(15);

/// Serves `rest` (the path after `/v1/vaults`), or `None` when no route matches.
pub async fn route(req: &mut ApiRequest, env: &Env, db: &D1, tenant: &TenantId, rest: &[&str]) -> Option<Result<Response, ApiError>> {
    let method = req.method();
    // Only the verbs that seal secrets need the root secret.
    let secrets = match (&method, rest) {
        (Method::Post, [_, "credentials"]) | (Method::Post, [_, "credentials", _]) | (Method::Post, [_, "credentials", _, "mcp_oauth_validate"]) => match root_secret::secret_box(env).await {
            Ok(b) => Some(b),
            Err(e) => return Some(Err(e)),
        },
        _ => None,
    };
    let vaults = Vaults { store: db, clock: &WorkerClock, ids: &WorkerIds, secrets: secrets.as_deref(), announcer: db };
    let list_params = |req: &ApiRequest| -> Result<ListParams, ApiError> {
        let page: PageParams = req.query()?;
        let archived: ArchivedParam = req.query()?;
        Ok(ListParams::from_query(page, &archived, &CreatedFilter::default(), None))
    };
    let result = match (method, rest) {
        (Method::Post, []) => async { json(vaults.create_vault(tenant, &req.body().await?).await?) }.await,
        (Method::Get, []) => async {
            let p = vaults.list_vaults(tenant, &list_params(req)?).await?;
            json(ListPage { data: p.data, next_page: p.next_page })
        }
        .await,
        (Method::Get, [id]) => async { json(vaults.get_vault(tenant, id).await?) }.await,
        (Method::Post, [id]) => async { json(vaults.update_vault(tenant, id, &req.body().await?).await?) }.await,
        (Method::Delete, [id]) => async {
            vaults.delete_vault(tenant, id).await?;
            json(Deleted { id: (*id).to_owned(), kind: "vault_deleted".into() })
        }
        .await,
        (Method::Post, [id, "archive"]) => async { json(vaults.archive_vault(tenant, id).await?) }.await,
        (Method::Post, [vault, "credentials"]) => async { json(vaults.create_credential(tenant, vault, &req.body().await?).await?) }.await,
        (Method::Get, [vault, "credentials"]) => async {
            let p = vaults.list_credentials(tenant, vault, &list_params(req)?).await?;
            json(ListPage { data: p.data, next_page: p.next_page })
        }
        .await,
        (Method::Get, [vault, "credentials", id]) => async { json(vaults.get_credential(tenant, vault, id).await?) }.await,
        (Method::Post, [vault, "credentials", id, "mcp_oauth_validate"]) => async {
            vaults.get_credential(tenant, vault, id).await?;
            let secrets = secrets.as_deref().ok_or_else(|| ApiError::new(503, "secrets are not available"))?;
            let http = Outbound::new(env, OAUTH_TIMEOUT);
            let nonce = || WorkerIds.nonce();
            let oauth = OAuth { store: db, secrets, http: &http, announcer: db, now: WorkerClock.now(), nonce: &nonce };
            json(oauth.validate(tenant, vault, id).await?)
        }
        .await,
        (Method::Post, [vault, "credentials", id]) => {
            async { json(vaults.update_credential(tenant, vault, id, &req.body().await?).await?) }.await
        }
        (Method::Delete, [vault, "credentials", id]) => async {
            vaults.delete_credential(tenant, vault, id).await?;
            json(Deleted { id: (*id).to_owned(), kind: "vault_credential_deleted".into() })
        }
        .await,
        (Method::Post, [vault, "credentials", id, "archive"]) => async { json(vaults.archive_credential(tenant, vault, id).await?) }.await,
        _ => return None,
    };
    Some(result)
}
