//! `/v1/model_cards…` on Workers: the core's model card service over D1 (BYOK), keys sealed
//! by the verified root secret and never returned — the native server's verbs, rules and
//! wire shapes (`http/model_cards.rs`). openma-agent opens a card's key to call the provider.

use openma_core::TenantId;
use openma_core::model_cards::ModelCards;
use openma_core::platform::ListParams;
use openma_types::query::{ArchivedParam, CreatedFilter, PageParams};
use openma_types::{Deleted, ListPage};
use worker::{Env, Method, Response};

use crate::adapters::{WorkerClock, WorkerIds};
use crate::api::{ApiRequest, json};
use crate::d1::D1;
use crate::errors::ApiError;
use openma_worker_common::root_secret;

/// Serves `rest` (the path after `/v1/model_cards`), or `None` when no route matches.
pub async fn route(req: &mut ApiRequest, env: &Env, db: &D1, tenant: &TenantId, rest: &[&str]) -> Option<Result<Response, ApiError>> {
    let method = req.method();
    // only the verbs that seal a key need the root secret
    let secrets = match (&method, rest) {
        (Method::Post, []) | (Method::Post, [_]) => match root_secret::secret_box(env).await {
            Ok(b) => Some(b),
            Err(e) => return Some(Err(e)),
        },
        _ => None,
    };
    let cards = ModelCards { store: db, clock: &WorkerClock, ids: &WorkerIds, secrets: secrets.as_deref() };
    let result = match (method, rest) {
        (Method::Post, []) => async { json(cards.create(tenant, &req.body().await?).await?) }.await,
        (Method::Get, []) => async {
            let page: PageParams = req.query()?;
            let archived: ArchivedParam = req.query()?;
            let p = cards.list(tenant, &ListParams::from_query(page, &archived, &CreatedFilter::default(), None)).await?;
            json(ListPage { data: p.data, next_page: p.next_page })
        }
        .await,
        (Method::Get, [id]) => async { json(cards.get(tenant, id).await?) }.await,
        (Method::Post, [id]) => async { json(cards.update(tenant, id, &req.body().await?).await?) }.await,
        (Method::Delete, [id]) => async {
            cards.delete(tenant, id).await?;
            json(Deleted { id: (*id).to_owned(), kind: "model_card_deleted".into() })
        }
        .await,
        (Method::Post, [id, "archive"]) => async { json(cards.archive(tenant, id).await?) }.await,
        _ => return None,
    };
    Some(result)
}
