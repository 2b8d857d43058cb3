//! `/v1/model_cards`: a tenant's own model provider configurations (BYOK). The API key is
//! write-only: no response type of this module can carry one.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use openma_types::model_cards::{CreateModelCardRequest, ModelCard, UpdateModelCardRequest};
use openma_types::{Deleted, ErrorEnvelope, ListPage};

use super::{ArchivedParam, CreatedFilter, PageParams, list_params};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/model_cards", post(create_model_card).get(list_model_cards))
        .route("/v1/model_cards/{model_card_id}", get(get_model_card).post(update_model_card).delete(delete_model_card))
        .route("/v1/model_cards/{model_card_id}/archive", post(archive_model_card))
}

/// Create a model card. Its API key is sealed at once and never returned.
#[utoipa::path(post, path = "/v1/model_cards", tag = "model_cards", request_body = CreateModelCardRequest,
    responses((status = 200, body = ModelCard), (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn create_model_card(State(app): State<AppState>, Caller(t): Caller, ApiJson(req): ApiJson<CreateModelCardRequest>) -> Result<Json<ModelCard>, ApiError> {
    Ok(Json(app.platform.create_model_card(&t, &req).await?))
}

/// Retrieve a model card (without its key).
#[utoipa::path(get, path = "/v1/model_cards/{model_card_id}", tag = "model_cards", params(("model_card_id" = String, Path, description = "The model card id")),
    responses((status = 200, body = ModelCard), (status = 404, body = ErrorEnvelope)))]
pub async fn get_model_card(State(app): State<AppState>, Caller(t): Caller, ApiPath(id): ApiPath<String>) -> Result<Json<ModelCard>, ApiError> {
    Ok(Json(app.platform.get_model_card(&t, &id).await?))
}

/// Update a model card; `api_key` replaces the key, omitted keeps it.
#[utoipa::path(post, path = "/v1/model_cards/{model_card_id}", tag = "model_cards", request_body = UpdateModelCardRequest,
    params(("model_card_id" = String, Path, description = "The model card id")),
    responses((status = 200, body = ModelCard), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn update_model_card(
    State(app): State<AppState>,
    Caller(t): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateModelCardRequest>,
) -> Result<Json<ModelCard>, ApiError> {
    Ok(Json(app.platform.update_model_card(&t, &id, &req).await?))
}

/// List model cards, newest first.
#[utoipa::path(get, path = "/v1/model_cards", tag = "model_cards", params(PageParams, ArchivedParam),
    responses((status = 200, body = ListPage<ModelCard>), (status = 400, body = ErrorEnvelope)))]
pub async fn list_model_cards(
    State(app): State<AppState>,
    Caller(t): Caller,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(archived): ApiQuery<ArchivedParam>,
) -> Result<Json<ListPage<ModelCard>>, ApiError> {
    let p = app.platform.list_model_cards(&t, &list_params(page, &archived, &CreatedFilter::default(), None)).await?;
    Ok(Json(ListPage { data: p.data, next_page: p.next_page }))
}

/// Delete a model card and its sealed key. Sessions fall back to another card or the
/// server's keys on their next model request.
#[utoipa::path(delete, path = "/v1/model_cards/{model_card_id}", tag = "model_cards", params(("model_card_id" = String, Path, description = "The model card id")),
    responses((status = 200, body = Deleted), (status = 404, body = ErrorEnvelope)))]
pub async fn delete_model_card(State(app): State<AppState>, Caller(t): Caller, ApiPath(id): ApiPath<String>) -> Result<Json<Deleted>, ApiError> {
    app.platform.delete_model_card(&t, &id).await?;
    Ok(Json(Deleted { id, kind: "model_card_deleted".into() }))
}

/// Archive a model card: it serves no more requests and its key is purged.
#[utoipa::path(post, path = "/v1/model_cards/{model_card_id}/archive", tag = "model_cards", params(("model_card_id" = String, Path, description = "The model card id")),
    responses((status = 200, body = ModelCard), (status = 404, body = ErrorEnvelope)))]
pub async fn archive_model_card(State(app): State<AppState>, Caller(t): Caller, ApiPath(id): ApiPath<String>) -> Result<Json<ModelCard>, ApiError> {
    Ok(Json(app.platform.archive_model_card(&t, &id).await?))
}
