//! `/v1/skills`: skill uploads (multipart `files[]` parts whose filenames carry the paths
//! below one top-level directory, or one zip of them), their versions, and each version's
//! content as a zip archive. Uploads are read into memory within the limits of
//! [`openma_core::skills`], counted while they arrive (`skills::read_form`, which the
//! Workers read them with too).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use openma_core::platform::ListParams;
use openma_core::edge;
use openma_core::skills::{self, UploadedFile};
use openma_types::skills::{DeletedSkill, DeletedSkillVersion, Skill, SkillVersion};
use openma_types::{ErrorEnvelope, ListPage};
use serde::Deserialize;

use super::files::content_disposition;
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};

pub fn routes() -> Router<AppState> {
    // uploads are bounded by `skills::upload_form`'s limits as they stream in
    Router::new()
        .route("/v1/skills", get(list_skills).post(create_skill))
        .route("/v1/skills/{skill_id}", get(get_skill).delete(delete_skill))
        .route("/v1/skills/{skill_id}/versions", get(list_versions).post(create_version))
        .route("/v1/skills/{skill_id}/versions/{version}", get(get_version).delete(delete_version))
        .route("/v1/skills/{skill_id}/versions/{version}/content", get(download_version))
}

/// Paging and filters of the skill list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SkillListParams {
    /// Page size, 1 to 1000 (default 20).
    #[serde(default)]
    pub limit: Option<i64>,
    /// Opaque cursor from a previous response's `next_page`.
    #[serde(default)]
    pub page: Option<String>,
    /// Only skills of this source: `custom` (every uploaded skill), `anthropic`,
    /// `anthropic_example` or `plugin` (none here).
    #[serde(default)]
    pub source: Option<String>,
}

/// Paging of a skill's versions.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionListParams {
    /// Page size, 1 to 1000 (default 20).
    #[serde(default)]
    pub limit: Option<i64>,
    /// Opaque cursor from a previous response's `next_page`.
    #[serde(default)]
    pub page: Option<String>,
}

/// The upload's files and its `display_name` field, read as the body streams in.
async fn read_form(req: Request) -> Result<(Vec<UploadedFile>, Option<String>), ApiError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let boundary = edge::multipart_boundary(content_type)?;
    Ok(skills::read_form(skills::upload_form(req.into_body().into_data_stream(), boundary)).await?)
}

/// Create a skill from its files (`files[]` parts under one top-level directory with a
/// `SKILL.md`, or one zip archive of them) and an optional `display_name`.
#[utoipa::path(post, path = "/v1/skills", tag = "skills",
    request_body(content_type = "multipart/form-data", description = "repeated `files[]` parts whose filenames carry their paths (e.g. `my-skill/SKILL.md`), or one `.zip`; optional `display_name`"),
    responses((status = 200, body = Skill), (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope), (status = 413, body = ErrorEnvelope)))]
pub async fn create_skill(State(app): State<AppState>, Caller(t): Caller, req: Request) -> Result<Json<Skill>, ApiError> {
    let (files, display_name) = read_form(req).await?;
    Ok(Json(app.platform.create_skill(&t, files, display_name).await?))
}

/// Retrieve a skill.
#[utoipa::path(get, path = "/v1/skills/{skill_id}", tag = "skills", params(("skill_id" = String, Path, description = "The skill id")),
    responses((status = 200, body = Skill), (status = 404, body = ErrorEnvelope)))]
pub async fn get_skill(State(app): State<AppState>, Caller(t): Caller, ApiPath(id): ApiPath<String>) -> Result<Json<Skill>, ApiError> {
    Ok(Json(app.platform.get_skill(&t, &id).await?))
}

/// List skills, newest first.
#[utoipa::path(get, path = "/v1/skills", tag = "skills", params(SkillListParams),
    responses((status = 200, body = ListPage<Skill>), (status = 400, body = ErrorEnvelope)))]
pub async fn list_skills(State(app): State<AppState>, Caller(t): Caller, ApiQuery(q): ApiQuery<SkillListParams>) -> Result<Json<ListPage<Skill>>, ApiError> {
    let params = ListParams { limit: q.limit, page: q.page, ..Default::default() };
    let p = app.platform.list_skills(&t, &params, q.source.as_deref()).await?;
    Ok(Json(ListPage { data: p.data, next_page: p.next_page }))
}

/// Delete a skill with all its versions.
#[utoipa::path(delete, path = "/v1/skills/{skill_id}", tag = "skills", params(("skill_id" = String, Path, description = "The skill id")),
    responses((status = 200, body = DeletedSkill), (status = 404, body = ErrorEnvelope)))]
pub async fn delete_skill(State(app): State<AppState>, Caller(t): Caller, ApiPath(id): ApiPath<String>) -> Result<Json<DeletedSkill>, ApiError> {
    app.platform.delete_skill(&t, &id).await?;
    Ok(Json(DeletedSkill { id, tag: Default::default() }))
}

/// Create a version of a skill from its files; its SKILL.md must carry the skill's name.
#[utoipa::path(post, path = "/v1/skills/{skill_id}/versions", tag = "skills", params(("skill_id" = String, Path, description = "The skill id")),
    request_body(content_type = "multipart/form-data", description = "repeated `files[]` parts whose filenames carry their paths (e.g. `my-skill/SKILL.md`), or one `.zip`"),
    responses((status = 200, body = SkillVersion), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 413, body = ErrorEnvelope)))]
pub async fn create_version(
    State(app): State<AppState>,
    Caller(t): Caller,
    ApiPath(skill_id): ApiPath<String>,
    req: Request,
) -> Result<Json<SkillVersion>, ApiError> {
    let (files, _) = read_form(req).await?;
    Ok(Json(app.platform.create_skill_version(&t, &skill_id, files).await?))
}

/// Retrieve a version by id, or the skill's newest with `latest`.
#[utoipa::path(get, path = "/v1/skills/{skill_id}/versions/{version}", tag = "skills",
    params(("skill_id" = String, Path, description = "The skill id"), ("version" = String, Path, description = "A version id, or `latest`")),
    responses((status = 200, body = SkillVersion), (status = 404, body = ErrorEnvelope)))]
pub async fn get_version(State(app): State<AppState>, Caller(t): Caller, ApiPath((skill_id, version)): ApiPath<(String, String)>) -> Result<Json<SkillVersion>, ApiError> {
    Ok(Json(app.platform.get_skill_version(&t, &skill_id, &version).await?))
}

/// List a skill's versions, newest first.
#[utoipa::path(get, path = "/v1/skills/{skill_id}/versions", tag = "skills", params(("skill_id" = String, Path, description = "The skill id"), VersionListParams),
    responses((status = 200, body = ListPage<SkillVersion>), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list_versions(
    State(app): State<AppState>,
    Caller(t): Caller,
    ApiPath(skill_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<VersionListParams>,
) -> Result<Json<ListPage<SkillVersion>>, ApiError> {
    let params = ListParams { limit: q.limit, page: q.page, ..Default::default() };
    let p = app.platform.list_skill_versions(&t, &skill_id, &params).await?;
    Ok(Json(ListPage { data: p.data, next_page: p.next_page }))
}

/// Delete a version; the skill's latest moves to the newest one left. A skill's only
/// version cannot be deleted (delete the skill).
#[utoipa::path(delete, path = "/v1/skills/{skill_id}/versions/{version}", tag = "skills",
    params(("skill_id" = String, Path, description = "The skill id"), ("version" = String, Path, description = "A version id, or `latest`")),
    responses((status = 200, body = DeletedSkillVersion), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn delete_version(
    State(app): State<AppState>,
    Caller(t): Caller,
    ApiPath((skill_id, version)): ApiPath<(String, String)>,
) -> Result<Json<DeletedSkillVersion>, ApiError> {
    let id = app.platform.delete_skill_version(&t, &skill_id, &version).await?;
    Ok(Json(DeletedSkillVersion { id, tag: Default::default() }))
}

/// Download a version's files as a zip archive (entries under `<name>/`).
#[utoipa::path(get, path = "/v1/skills/{skill_id}/versions/{version}/content", tag = "skills",
    params(("skill_id" = String, Path, description = "The skill id"), ("version" = String, Path, description = "A version id, or `latest`")),
    responses((status = 200, content_type = "application/zip", body = Vec<u8>), (status = 404, body = ErrorEnvelope)))]
pub async fn download_version(State(app): State<AppState>, Caller(t): Caller, ApiPath((skill_id, version)): ApiPath<(String, String)>) -> Result<Response, ApiError> {
    let (v, size, body) = app.platform.download_skill_version(&t, &skill_id, &version).await?;
    let body = Body::from_stream(body.map(|chunk| chunk.map(bytes::Bytes::from).map_err(std::io::Error::other)));
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    h.insert(header::CONTENT_DISPOSITION, content_disposition(&format!("{}.zip", v.name)));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(res)
}
