//! `/v1/files`: multipart uploads streamed to the blob store, metadata, downloads
//! streamed back, deletion. The bytes never sit in memory whole.

use axum::body::Body;
use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use openma_core::files::{FileListParams, PendingBlob, UploadFields};
use openma_core::ports::BlobError;
use openma_types::files::{DeletedFile, FileMetadata};
use openma_types::{ErrorEnvelope, ListPage};
use openma_types::query::FileFilter;

use super::PageParams;
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};

/// Multipart framing on top of the file itself.
const FORM_OVERHEAD_BYTES: u64 = 1024 * 1024;

pub fn routes(max_file_bytes: u64) -> Router<AppState> {
    let limit = usize::try_from(max_file_bytes.saturating_add(FORM_OVERHEAD_BYTES)).unwrap_or(usize::MAX);
    Router::new()
        .route("/v1/files", get(list_files).post(upload_file).layer(DefaultBodyLimit::max(limit)))
        .route("/v1/files/{file_id}", get(get_file).delete(delete_file))
        .route("/v1/files/{file_id}/content", get(download_file))
}

pub(crate) fn multipart_error(e: MultipartError) -> ApiError {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(status, "the upload is larger than this server accepts")
    } else {
        ApiError::bad_request(format!("the multipart body cannot be read: {}", e.body_text()))
    }
}

/// Upload a file (multipart: a `file` part and an optional `expires_in_seconds` field).
#[utoipa::path(post, path = "/v1/files", tag = "files",
    request_body(content_type = "multipart/form-data", description = "`file` (the bytes) and optional `expires_in_seconds` (3600–7776000)"),
    responses((status = 200, body = FileMetadata), (status = 400, body = ErrorEnvelope), (status = 413, body = ErrorEnvelope)))]
pub async fn upload_file(
    State(app): State<AppState>,
    Caller(t): Caller,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Json<FileMetadata>, ApiError> {
    let mut form = form.map_err(|e| ApiError::bad_request(format!("expected a multipart/form-data body: {}", e.body_text())))?;
    let mut fields = UploadFields::default();
    let mut pending: Option<PendingBlob> = None;
    let read = async {
        while let Some(mut field) = form.next_field().await.map_err(multipart_error)? {
            match field.name() {
                Some("file") => {
                    if pending.is_some() {
                        return Err(ApiError::bad_request("the form has more than one `file` part"));
                    }
                    fields.filename = field.file_name().map(str::to_owned);
                    fields.content_type = field.content_type().map(str::to_owned);
                    // The field borrows the form, so it is pumped into a channel while the
                    // blob store consumes the other end.
                    let (tx, rx) = futures::channel::mpsc::channel::<Result<Vec<u8>, BlobError>>(4);
                    let pump = async move {
                        let mut tx = tx;
                        loop {
                            let next = match field.chunk().await {
                                Ok(Some(chunk)) => Ok(chunk.to_vec()),
                                Ok(None) => return Ok(()),
                                Err(e) => Err(e),
                            };
                            match next {
                                Ok(chunk) => {
                                    if futures::SinkExt::send(&mut tx, Ok(chunk)).await.is_err() {
                                        // the store stopped reading (e.g. too large)
                                        return Ok(());
                                    }
                                }
                                Err(e) => {
                                    let _ = futures::SinkExt::send(&mut tx, Err(BlobError::Source(e.body_text()))).await;
                                    return Err(e);
                                }
                            }
                        }
                    };
                    let (stored, pumped) = tokio::join!(app.platform.put_upload(&t, rx.boxed(), app.info.max_file_bytes), pump);
                    match (stored, pumped) {
                        (Ok(p), Ok(())) => pending = Some(p),
                        (Ok(p), Err(e)) => {
                            app.platform.discard_upload(p).await;
                            return Err(multipart_error(e));
                        }
                        (Err(e), Err(m)) if m.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                            drop(e);
                            return Err(multipart_error(m));
                        }
                        (Err(e), _) => return Err(e.into()),
                    }
                }
                Some("expires_in_seconds") => {
                    let text = field.text().await.map_err(multipart_error)?;
                    // refused before any bytes are stored when it comes first (as the SDKs send it)
                    fields.expires_in_seconds = Some(openma_core::files::parse_expires(&text)?);
                }
                // other parts are tolerated, as unknown JSON fields are elsewhere
                _ => while field.chunk().await.map_err(multipart_error)?.is_some() {},
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = read {
        if let Some(p) = pending {
            app.platform.discard_upload(p).await;
        }
        return Err(e);
    }
    let pending = pending.ok_or_else(|| ApiError::bad_request("the form has no `file` part"))?;
    Ok(Json(app.platform.create_upload(&t, pending, &fields).await?))
}

/// List files, newest first.
#[utoipa::path(get, path = "/v1/files", tag = "files", params(PageParams, FileFilter),
    responses((status = 200, body = ListPage<FileMetadata>), (status = 400, body = ErrorEnvelope)))]
pub async fn list_files(
    State(app): State<AppState>,
    Caller(t): Caller,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(filter): ApiQuery<FileFilter>,
) -> Result<Json<ListPage<FileMetadata>>, ApiError> {
    let p = app.platform.list_files(&t, &FileListParams::from_query(page, filter)).await?;
    Ok(Json(ListPage { data: p.data, next_page: p.next_page }))
}

/// A file's metadata.
#[utoipa::path(get, path = "/v1/files/{file_id}", tag = "files", params(("file_id" = String, Path, description = "The file id")),
    responses((status = 200, body = FileMetadata), (status = 404, body = ErrorEnvelope)))]
pub async fn get_file(State(app): State<AppState>, Caller(t): Caller, ApiPath(id): ApiPath<String>) -> Result<Json<FileMetadata>, ApiError> {
    Ok(Json(app.platform.get_file(&t, &id).await?))
}

/// Delete a file. Sessions that mounted it keep their own copy.
#[utoipa::path(delete, path = "/v1/files/{file_id}", tag = "files", params(("file_id" = String, Path, description = "The file id")),
    responses((status = 200, body = DeletedFile), (status = 404, body = ErrorEnvelope)))]
pub async fn delete_file(State(app): State<AppState>, Caller(t): Caller, ApiPath(id): ApiPath<String>) -> Result<Json<DeletedFile>, ApiError> {
    app.platform.delete_file(&t, &id).await?;
    Ok(Json(DeletedFile { id, tag: Default::default() }))
}

/// The `Content-Disposition` of a download ([`openma_core::files::content_disposition`]).
pub(crate) fn content_disposition(filename: &str) -> HeaderValue {
    HeaderValue::from_str(&openma_core::files::content_disposition(filename)).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// Download a file's bytes.
#[utoipa::path(get, path = "/v1/files/{file_id}/content", tag = "files", params(("file_id" = String, Path, description = "The file id")),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 404, body = ErrorEnvelope)))]
pub async fn download_file(State(app): State<AppState>, Caller(t): Caller, ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    let (meta, body) = app.platform.download_file(&t, &id).await?;
    let body = Body::from_stream(body.map(|chunk| chunk.map(bytes::Bytes::from).map_err(std::io::Error::other)));
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_str(&meta.mime_type).unwrap_or(HeaderValue::from_static("application/octet-stream")));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size_bytes));
    h.insert(header::CONTENT_DISPOSITION, content_disposition(&meta.filename));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(res)
}
