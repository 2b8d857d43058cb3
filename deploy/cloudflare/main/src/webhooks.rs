//! `/v1/organizations/webhooks…` on Workers: the organization's webhook endpoints and their
//! delivery log — the core's `Webhooks` over D1, signing secrets sealed by the verified root
//! secret, with the native server's verbs, rules and wire shapes (`http/webhooks.rs`). What
//! the other routes change is queued by D1's `Announcer` and sent by
//! `openma_worker_common::webhooks::deliver_due`.

use openma_core::platform::ListParams;
use openma_core::webhooks::{IdPageParams, Webhooks};
use openma_core::{DomainError, TenantId};
use openma_types::ListPage;
use openma_types::query::{ArchivedParam, CreatedFilter, EndpointListParams, PageParams};
use openma_types::webhooks::{DeletedWebhookEndpoint, WebhookSigningSecret};
use worker::{Env, Method, Response};

use crate::adapters::{WorkerClock, WorkerIds};
use crate::api::{ApiRequest, json};
use crate::d1::D1;
use crate::errors::ApiError;
use openma_worker_common::root_secret;

/// A destination naming a private place is refused up front, as natively (each attempt
/// checks again).
fn destination(env: &Env, url: &str) -> Result<(), ApiError> {
    openma_core::web::check_destination(url, openma_worker_common::allow_private_addresses(env)).map_err(|m| DomainError::invalid(m).into())
}

/// Serves `rest` (the path after `/v1/organizations/webhooks`), or `None` when no route matches.
pub async fn route(req: &mut ApiRequest, env: &Env, db: &D1, tenant: &TenantId, rest: &[&str]) -> Option<Result<Response, ApiError>> {
    let method = req.method();
    // only the verbs that seal a signing secret need the root secret
    let secrets = match (&method, rest) {
        (Method::Post, []) | (Method::Post, [_, "regenerate_signing_secret"]) => match root_secret::secret_box(env).await {
            Ok(b) => Some(b),
            Err(e) => return Some(Err(e)),
        },
        _ => None,
    };
    let hooks = Webhooks { store: db, clock: &WorkerClock, ids: &WorkerIds, secrets: secrets.as_deref() };
    let result = match (method, rest) {
        (Method::Post, []) => async {
            let body: openma_types::webhooks::CreateWebhookEndpointRequest = req.body().await?;
            destination(env, &body.url)?;
            json(hooks.create_endpoint(tenant, &body).await?)
        }
        .await,
        (Method::Get, []) => async {
            let q: EndpointListParams = req.query()?;
            json(hooks.list_endpoints(tenant, &IdPageParams::from(q)).await?)
        }
        .await,
        (Method::Get, [id]) => async { json(hooks.get_endpoint(tenant, id).await?) }.await,
        (Method::Post, [id]) => async {
            let body: openma_types::webhooks::UpdateWebhookEndpointRequest = req.body().await?;
            if let Some(url) = &body.url {
                destination(env, url)?;
            }
            json(hooks.update_endpoint(tenant, id, &body).await?)
        }
        .await,
        (Method::Delete, [id]) => async {
            hooks.delete_endpoint(tenant, id).await?;
            json(DeletedWebhookEndpoint { id: (*id).to_owned(), tag: Default::default() })
        }
        .await,
        (Method::Post, [id, "regenerate_signing_secret"]) => async { json(WebhookSigningSecret { signing_secret: hooks.regenerate_secret(tenant, id).await? }) }.await,
        (Method::Get, [id, "deliveries"]) => async {
            let page: PageParams = req.query()?;
            let p = hooks.list_deliveries(tenant, id, &ListParams::from_query(page, &ArchivedParam::default(), &CreatedFilter::default(), None)).await?;
            json(ListPage { data: p.data, next_page: p.next_page })
        }
        .await,
        _ => return None,
    };
    Some(result)
}
