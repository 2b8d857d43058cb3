//! `/v1/files…` on Workers: the core's file service over D1 (rows) and R2 (bytes), with the
//! native server's verbs, rules and wire shapes (`http/files.rs`). An upload is parsed as it
//! streams in (multer, as axum parses it natively) and streamed to R2 part by part, so a
//! file never sits whole in the Worker's memory; a download streams R2's body back.

use futures::StreamExt;
use openma_core::TenantId;
use openma_core::files::{FileListParams, Files, PendingBlob, UploadFields, content_disposition};
use openma_core::ports::{BlobError, ByteStream};
use openma_types::ListPage;
use openma_types::files::DeletedFile;
use openma_types::query::{FileFilter, PageParams};
use openma_worker_common::files::{WorkerFiles, max_file_bytes};
use openma_worker_common::r2::SendStream;
use worker::{Env, Method, Response};

use crate::api::{ApiRequest, json};
use crate::errors::ApiError;

/// Multipart framing on top of the file itself.
const FORM_OVERHEAD_BYTES: u64 = 1024 * 1024;

/// Serves `rest` (the path after `/v1/files`), or `None` when no route matches.
pub async fn route(req: &mut ApiRequest, env: &Env, tenant: &TenantId, rest: &[&str]) -> Option<Result<Response, ApiError>> {
    let worker_files = match WorkerFiles::new(env) {
        Ok(f) => f,
        Err(e) => return Some(Err(e)),
    };
    let files = worker_files.files();
    let result = match (req.method(), rest) {
        (Method::Post, []) => upload(req, &files, tenant, max_file_bytes(env)).await,
        (Method::Get, []) => async {
            let page: PageParams = req.query()?;
            let filter: FileFilter = req.query()?;
            let p = files.list(tenant, &FileListParams::from_query(page, filter)).await?;
            json(ListPage { data: p.data, next_page: p.next_page })
        }
        .await,
        (Method::Get, [id]) => async { json(files.get(tenant, id).await?) }.await,
        (Method::Delete, [id]) => async {
            files.delete(tenant, id).await?;
            json(DeletedFile { id: (*id).to_owned(), tag: Default::default() })
        }
        .await,
        (Method::Get, [id, "content"]) => download(&files, tenant, id).await,
        _ => return None,
    };
    Some(result)
}


fn multipart_error(e: multer::Error) -> ApiError {
    openma_core::edge::multipart_error(e).into()
}

/// The request's multipart form as it streams in, refused past `max_bytes` in all.
fn multipart(req: &mut ApiRequest, max_bytes: u64) -> Result<multer::Multipart<'static>, ApiError> {
    let boundary = openma_core::edge::multipart_boundary(&req.header("content-type").unwrap_or_default())?;
    Ok(openma_core::edge::multipart_form(form_body(req)?, boundary, max_bytes))
}

/// The request's body as multer reads it.
pub fn form_body(req: &mut ApiRequest) -> Result<impl futures::Stream<Item = Result<multer::bytes::Bytes, std::io::Error>> + Send + 'static, ApiError> {
    let body = req.body_stream()?.map(|chunk| chunk.map(multer::bytes::Bytes::from).map_err(|e| std::io::Error::other(e.to_string())));
    Ok(SendStream(Box::pin(body)))
}

/// A multipart upload: a `file` part and an optional `expires_in_seconds` field.
async fn upload(req: &mut ApiRequest, files: &Files<'_>, tenant: &TenantId, max_bytes: u64) -> Result<Response, ApiError> {
    let mut form = multipart(req, max_bytes.saturating_add(FORM_OVERHEAD_BYTES))?;
    let mut fields = UploadFields::default();
    let mut pending: Option<PendingBlob> = None;
    let read: Result<(), ApiError> = async {
        while let Some(mut field) = form.next_field().await.map_err(multipart_error)? {
            match field.name() {
                Some("file") => {
                    if pending.is_some() {
                        return Err(ApiError::new(400, "the form has more than one `file` part"));
                    }
                    fields.filename = field.file_name().map(str::to_owned);
                    fields.content_type = field.content_type().map(ToString::to_string);
                    let bytes = field.map(|c| c.map(|b| b.to_vec()).map_err(|e| BlobError::Source(e.to_string()))).boxed();
                    pending = Some(files.put_upload(tenant, bytes, max_bytes).await?);
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
            files.discard_upload(p).await;
        }
        return Err(e);
    }
    let pending = pending.ok_or_else(|| ApiError::new(400, "the form has no `file` part"))?;
    json(files.create_upload(tenant, pending, &fields).await?)
}

async fn download(files: &Files<'_>, tenant: &TenantId, id: &str) -> Result<Response, ApiError> {
    let (meta, body) = files.download(tenant, id).await?;
    attachment(body, &meta.mime_type, meta.size_bytes, &meta.filename)
}

/// A download: `body` streamed back as an attachment named `filename`.
pub fn attachment(body: ByteStream, mime_type: &str, size: u64, filename: &str) -> Result<Response, ApiError> {
    let internal = |e: worker::Error| ApiError::new(500, format!("cannot build the response: {e}"));
    let body = body.map(|chunk| chunk.map_err(|e| worker::Error::RustError(e.to_string())));
    let mut res = Response::from_stream(body).map_err(internal)?;
    let h = res.headers_mut();
    h.set("content-type", mime_type).map_err(internal)?;
    h.set("content-length", &size.to_string()).map_err(internal)?;
    h.set("content-disposition", &content_disposition(filename)).map_err(internal)?;
    h.set("x-content-type-options", "nosniff").map_err(internal)?;
    Ok(res)
}
