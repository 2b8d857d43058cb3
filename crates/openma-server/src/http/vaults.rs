//! `/v1/vaults` and `/v1/vaults/{id}/credentials`. Credential secrets are write-only: no
//! response type of this module can carry one.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use openma_types::vaults::{CredentialValidation, CreateCredentialRequest, CreateVaultRequest, Credential, UpdateCredentialRequest, UpdateVaultRequest, Vault};
use openma_types::{Deleted, ErrorEnvelope, ListPage};

use super::{ArchivedParam, CreatedFilter, PageParams, list_params};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/vaults", post(create_vault).get(list_vaults))
        .route("/v1/vaults/{vault_id}", get(get_vault).post(update_vault).delete(delete_vault))
        .route("/v1/vaults/{vault_id}/archive", post(archive_vault))
        .route("/v1/vaults/{vault_id}/credentials", post(create_credential).get(list_credentials))
        .route(
            "/v1/vaults/{vault_id}/credentials/{credential_id}",
            get(get_credential).post(update_credential).delete(delete_credential),
        )
        .route("/v1/vaults/{vault_id}/credentials/{credential_id}/archive", post(archive_credential))
        .route("/v1/vaults/{vault_id}/credentials/{credential_id}/mcp_oauth_validate", post(validate_credential))
}

/// Create a vault.
#[utoipa::path(post, path = "/v1/vaults", tag = "vaults", request_body = CreateVaultRequest,
    responses((status = 200, body = Vault), (status = 400, body = ErrorEnvelope)))]
pub async fn create_vault(State(app): State<AppState>, Caller(t): Caller, ApiJson(req): ApiJson<CreateVaultRequest>) -> Result<Json<Vault>, ApiError> {
    Ok(Json(app.platform.create_vault(&t, &req).await?))
}

/// Retrieve a vault.
#[utoipa::path(get, path = "/v1/vaults/{vault_id}", tag = "vaults", params(("vault_id" = String, Path, description = "The vault id")),
    responses((status = 200, body = Vault), (status = 404, body = ErrorEnvelope)))]
pub async fn get_vault(State(app): State<AppState>, Caller(t): Caller, ApiPath(id): ApiPath<String>) -> Result<Json<Vault>, ApiError> {
    Ok(Json(app.platform.get_vault(&t, &id).await?))
}

/// Update a vault's name or metadata.
#[utoipa::path(post, path = "/v1/vaults/{vault_id}", tag = "vaults", request_body = UpdateVaultRequest, params(("vault_id" = String, Path, description = "The vault id")),
    responses((status = 200, body = Vault), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn update_vault(State(app): State<AppState>, Caller(t): Caller, ApiPath(id): ApiPath<String>, ApiJson(req): ApiJson<UpdateVaultRequest>) -> Result<Json<Vault>, ApiError> {
    Ok(Json(app.platform.update_vault(&t, &id, &req).await?))
}

/// List vaults, newest first.
#[utoipa::path(get, path = "/v1/vaults", tag = "vaults", params(PageParams, ArchivedParam),
    responses((status = 200, body = ListPage<Vault>), (status = 400, body = ErrorEnvelope)))]
pub async fn list_vaults(State(app): State<AppState>, Caller(t): Caller, ApiQuery(page): ApiQuery<PageParams>, ApiQuery(archived): ApiQuery<ArchivedParam>) -> Result<Json<ListPage<Vault>>, ApiError> {
    let p = app.platform.list_vaults(&t, &list_params(page, &archived, &CreatedFilter::default(), None)).await?;
    Ok(Json(ListPage { data: p.data, next_page: p.next_page }))
}

/// Delete a vault and its credentials.
#[utoipa::path(delete, path = "/v1/vaults/{vault_id}", tag = "vaults", params(("vault_id" = String, Path, description = "The vault id")),
    responses((status = 200, body = Deleted), (status = 404, body = ErrorEnvelope)))]
pub async fn delete_vault(State(app): State<AppState>, Caller(t): Caller, ApiPath(id): ApiPath<String>) -> Result<Json<Deleted>, ApiError> {
    app.platform.delete_vault(&t, &id).await?;
    Ok(Json(Deleted { id, kind: "vault_deleted".into() }))
}

/// Archive a vault: its credentials are archived and their secrets purged.
#[utoipa::path(post, path = "/v1/vaults/{vault_id}/archive", tag = "vaults", params(("vault_id" = String, Path, description = "The vault id")),
    responses((status = 200, body = Vault), (status = 404, body = ErrorEnvelope)))]
pub async fn archive_vault(State(app): State<AppState>, Caller(t): Caller, ApiPath(id): ApiPath<String>) -> Result<Json<Vault>, ApiError> {
    Ok(Json(app.platform.archive_vault(&t, &id).await?))
}

/// Create a credential. Its secrets are sealed at once and never returned.
#[utoipa::path(post, path = "/v1/vaults/{vault_id}/credentials", tag = "vaults", request_body = CreateCredentialRequest, params(("vault_id" = String, Path, description = "The vault id")),
    responses((status = 200, body = Credential), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn create_credential(State(app): State<AppState>, Caller(t): Caller, ApiPath(vault): ApiPath<String>, ApiJson(req): ApiJson<CreateCredentialRequest>) -> Result<Json<Credential>, ApiError> {
    Ok(Json(app.platform.create_credential(&t, &vault, &req).await?))
}

/// Retrieve a credential (without its secrets).
#[utoipa::path(get, path = "/v1/vaults/{vault_id}/credentials/{credential_id}", tag = "vaults",
    params(("vault_id" = String, Path, description = "The vault id"), ("credential_id" = String, Path, description = "The credential id")),
    responses((status = 200, body = Credential), (status = 404, body = ErrorEnvelope)))]
pub async fn get_credential(State(app): State<AppState>, Caller(t): Caller, ApiPath((vault, id)): ApiPath<(String, String)>) -> Result<Json<Credential>, ApiError> {
    Ok(Json(app.platform.get_credential(&t, &vault, &id).await?))
}

/// Update a credential; `auth.type` must stay the same.
#[utoipa::path(post, path = "/v1/vaults/{vault_id}/credentials/{credential_id}", tag = "vaults", request_body = UpdateCredentialRequest,
    params(("vault_id" = String, Path, description = "The vault id"), ("credential_id" = String, Path, description = "The credential id")),
    responses((status = 200, body = Credential), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn update_credential(
    State(app): State<AppState>,
    Caller(t): Caller,
    ApiPath((vault, id)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<UpdateCredentialRequest>,
) -> Result<Json<Credential>, ApiError> {
    Ok(Json(app.platform.update_credential(&t, &vault, &id, &req).await?))
}

/// List a vault's credentials, newest first.
#[utoipa::path(get, path = "/v1/vaults/{vault_id}/credentials", tag = "vaults", params(("vault_id" = String, Path, description = "The vault id"), PageParams, ArchivedParam),
    responses((status = 200, body = ListPage<Credential>), (status = 404, body = ErrorEnvelope)))]
pub async fn list_credentials(
    State(app): State<AppState>,
    Caller(t): Caller,
    ApiPath(vault): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(archived): ApiQuery<ArchivedParam>,
) -> Result<Json<ListPage<Credential>>, ApiError> {
    let p = app.platform.list_credentials(&t, &vault, &list_params(page, &archived, &CreatedFilter::default(), None)).await?;
    Ok(Json(ListPage { data: p.data, next_page: p.next_page }))
}

/// Delete a credential.
#[utoipa::path(delete, path = "/v1/vaults/{vault_id}/credentials/{credential_id}", tag = "vaults",
    params(("vault_id" = String, Path, description = "The vault id"), ("credential_id" = String, Path, description = "The credential id")),
    responses((status = 200, body = Deleted), (status = 404, body = ErrorEnvelope)))]
pub async fn delete_credential(State(app): State<AppState>, Caller(t): Caller, ApiPath((vault, id)): ApiPath<(String, String)>) -> Result<Json<Deleted>, ApiError> {
    app.platform.delete_credential(&t, &vault, &id).await?;
    Ok(Json(Deleted { id, kind: "vault_credential_deleted".into() }))
}

/// Archive a credential; its secrets are purged.
#[utoipa::path(post, path = "/v1/vaults/{vault_id}/credentials/{credential_id}/archive", tag = "vaults",
    params(("vault_id" = String, Path, description = "The vault id"), ("credential_id" = String, Path, description = "The credential id")),
    responses((status = 200, body = Credential), (status = 404, body = ErrorEnvelope)))]
pub async fn archive_credential(State(app): State<AppState>, Caller(t): Caller, ApiPath((vault, id)): ApiPath<(String, String)>) -> Result<Json<Credential>, ApiError> {
    Ok(Json(app.platform.archive_credential(&t, &vault, &id).await?))
}

/// Probe an `mcp_oauth` credential against its MCP server, refreshing it on a 401.
#[utoipa::path(post, path = "/v1/vaults/{vault_id}/credentials/{credential_id}/mcp_oauth_validate", tag = "vaults",
    params(("vault_id" = String, Path, description = "The vault id"), ("credential_id" = String, Path, description = "The credential id")),
    responses((status = 200, body = CredentialValidation), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn validate_credential(State(app): State<AppState>, Caller(t): Caller, ApiPath((vault, id)): ApiPath<(String, String)>) -> Result<Json<CredentialValidation>, ApiError> {
    app.platform.get_credential(&t, &vault, &id).await?;
    let validator = crate::mcp_oauth::Validator { allow_private: app.info.allow_private_fetch };
    Ok(Json(validator.validate(&app.platform, &t, &vault, &id).await?))
}
