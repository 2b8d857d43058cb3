//! `/v1/memory_stores…` on Workers: the core's memory service over D1 — stores, memories
//! by path with `content_sha256` preconditions, and versions attributed to the calling
//! API key — with the same verbs, rules and wire shapes as the native `http/memory.rs`.

use openma_core::memory::MemoryListParams;
use openma_core::platform::ListParams;
use openma_core::ports::VersionFilter;
use openma_types::query::{
    ArchivedParam, CreatedFilter, DeleteMemoryQuery, MemoryListQuery, MemoryView, PageParams, VersionListQuery, ViewParam,
};
use openma_types::{Deleted, ListPage};
use worker::{Method, Response};

use crate::api::{ApiRequest, json};
use crate::auth::Caller;
use crate::d1::D1;
use crate::errors::ApiError;

/// Serves `rest` (the path after `/v1/memory_stores`), or `None` when no route matches.
pub async fn route(req: &mut ApiRequest, db: &D1, caller: &Caller, rest: &[&str]) -> Option<Result<Response, ApiError>> {
    let memories = db.memories();
    let t = &caller.tenant;
    let by = caller.by.clone();
    let result = match (req.method(), rest) {
        (Method::Post, []) => async { json(memories.create_memory_store(t, &req.body().await?).await?) }.await,
        (Method::Get, []) => async {
            let page: PageParams = req.query()?;
            let archived: ArchivedParam = req.query()?;
            let created: CreatedFilter = req.query()?;
            let p = memories.list_memory_stores(t, &ListParams::from_query(page, &archived, &created, None)).await?;
            json(ListPage { data: p.data, next_page: p.next_page })
        }
        .await,
        (Method::Get, [id]) => async { json(memories.get_memory_store(t, id).await?) }.await,
        (Method::Post, [id]) => async { json(memories.update_memory_store(t, id, &req.body().await?).await?) }.await,
        (Method::Delete, [id]) => async {
            memories.delete_memory_store(t, id).await?;
            json(Deleted { id: (*id).to_owned(), kind: "memory_store_deleted".into() })
        }
        .await,
        (Method::Post, [id, "archive"]) => async { json(memories.archive_memory_store(t, id).await?) }.await,
        (Method::Post, [store, "memories"]) => async {
            let view: ViewParam = req.query()?;
            json(memories.create_memory(t, store, &req.body().await?, &by, view.full(MemoryView::Basic)).await?)
        }
        .await,
        (Method::Get, [store, "memories"]) => async {
            let q: MemoryListQuery = req.query()?;
            let page: PageParams = req.query()?;
            let view: ViewParam = req.query()?;
            let params = MemoryListParams {
                path_prefix: q.path_prefix,
                depth: q.depth,
                limit: page.limit,
                page: page.page,
                full: view.full(MemoryView::Basic),
            };
            let p = memories.list_memories(t, store, &params).await?;
            json(ListPage { data: p.data, next_page: p.next_page })
        }
        .await,
        (Method::Get, [store, "memories", id]) => async {
            let view: ViewParam = req.query()?;
            json(memories.get_memory(t, store, id, view.full(MemoryView::Full)).await?)
        }
        .await,
        (Method::Post, [store, "memories", id]) => async {
            let view: ViewParam = req.query()?;
            json(memories.update_memory(t, store, id, &req.body().await?, &by, view.full(MemoryView::Basic)).await?)
        }
        .await,
        (Method::Delete, [store, "memories", id]) => async {
            let q: DeleteMemoryQuery = req.query()?;
            memories.delete_memory(t, store, id, q.expected_content_sha256.as_deref(), &by).await?;
            json(Deleted { id: (*id).to_owned(), kind: "memory_deleted".into() })
        }
        .await,
        (Method::Get, [store, "memory_versions"]) => async {
            let q: VersionListQuery = req.query()?;
            let created: CreatedFilter = req.query()?;
            let page: PageParams = req.query()?;
            let view: ViewParam = req.query()?;
            let filter = VersionFilter {
                memory_id: q.memory_id,
                operation: q.operation,
                api_key_id: q.api_key_id,
                session_id: q.session_id,
                service_account_id: q.service_account_id,
            };
            let params = ListParams::from_query(page, &ArchivedParam::default(), &created, None);
            let p = memories.list_memory_versions(t, store, &filter, &params, view.full(MemoryView::Basic)).await?;
            json(ListPage { data: p.data, next_page: p.next_page })
        }
        .await,
        (Method::Get, [store, "memory_versions", id]) => async {
            let view: ViewParam = req.query()?;
            json(memories.get_memory_version(t, store, id, view.full(MemoryView::Full)).await?)
        }
        .await,
        (Method::Post, [store, "memory_versions", id, "redact"]) => async { json(memories.redact_memory_version(t, store, id, &by).await?) }.await,
        _ => return None,
    };
    Some(result)
}
