//! `/v1/skills…` on Workers: the core's skill service over D1 (rows) and R2 (each version's
//! zip archive), with the native server's verbs, rules and wire shapes (`http/skills.rs`).
//! An upload's `files[]` parts are read as they stream in, counted against the core's
//! limits (`skills::read_form`, as natively), so reading stops at the first byte over.

use openma_core::TenantId;
use openma_core::platform::ListParams;
use openma_core::edge;
use openma_core::skills::{self, Skills, UploadedFile};
use openma_types::ListPage;
use openma_types::query::PageParams;
use openma_types::skills::{DeletedSkill, DeletedSkillVersion};
use openma_worker_common::files::WorkerFiles;
use serde::Deserialize;
use worker::{Env, Method, Response};

use crate::api::{ApiRequest, json};
use crate::errors::ApiError;
use crate::files::{attachment, form_body};

/// `?source=` of the skill list.
#[derive(Deserialize, Default)]
struct SourceParam {
    #[serde(default)]
    source: Option<String>,
}

/// Serves `rest` (the path after `/v1/skills`), or `None` when no route matches.
pub async fn route(req: &mut ApiRequest, env: &Env, tenant: &TenantId, rest: &[&str]) -> Option<Result<Response, ApiError>> {
    let worker_files = match WorkerFiles::new(env) {
        Ok(f) => f,
        Err(e) => return Some(Err(e)),
    };
    let skills = worker_files.skills();
    let result = match (req.method(), rest) {
        (Method::Post, []) => async {
            let (files, display_name) = read_form(req).await?;
            json(skills.create(tenant, files, display_name).await?)
        }
        .await,
        (Method::Get, []) => async {
            let page: PageParams = req.query()?;
            let source: SourceParam = req.query()?;
            let p = skills.list(tenant, &list_params(page), source.source.as_deref()).await?;
            json(ListPage { data: p.data, next_page: p.next_page })
        }
        .await,
        (Method::Get, [id]) => async { json(skills.get(tenant, id).await?) }.await,
        (Method::Delete, [id]) => async {
            skills.delete(tenant, id).await?;
            json(DeletedSkill { id: (*id).to_owned(), tag: Default::default() })
        }
        .await,
        (Method::Post, [id, "versions"]) => async {
            let (files, _) = read_form(req).await?;
            json(skills.create_version(tenant, id, files).await?)
        }
        .await,
        (Method::Get, [id, "versions"]) => async {
            let page: PageParams = req.query()?;
            let p = skills.list_versions(tenant, id, &list_params(page)).await?;
            json(ListPage { data: p.data, next_page: p.next_page })
        }
        .await,
        (Method::Get, [id, "versions", version]) => async { json(skills.get_version(tenant, id, version).await?) }.await,
        (Method::Delete, [id, "versions", version]) => async {
            let id = skills.delete_version(tenant, id, version).await?;
            json(DeletedSkillVersion { id, tag: Default::default() })
        }
        .await,
        (Method::Get, [id, "versions", version, "content"]) => download(&skills, tenant, id, version).await,
        _ => return None,
    };
    Some(result)
}

fn list_params(page: PageParams) -> ListParams {
    ListParams { limit: page.limit, page: page.page, ..Default::default() }
}

/// The upload's files and its `display_name` field, read as the body streams in.
async fn read_form(req: &mut ApiRequest) -> Result<(Vec<UploadedFile>, Option<String>), ApiError> {
    let boundary = edge::multipart_boundary(&req.header("content-type").unwrap_or_default())?;
    Ok(skills::read_form(skills::upload_form(form_body(req)?, boundary)).await?)
}

/// A version's files as a zip archive (entries under `<name>/`).
async fn download(skills: &Skills<'_>, tenant: &TenantId, id: &str, version: &str) -> Result<Response, ApiError> {
    let (v, size, body) = skills.download_version(tenant, id, version).await?;
    attachment(body, "application/zip", size, &format!("{}.zip", v.name))
}
