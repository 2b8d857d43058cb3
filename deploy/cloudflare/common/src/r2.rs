//! The [`BlobStore`] port on R2 (binding `BLOBS`), the bucket the native server reaches as
//! `s3://…` when it runs against R2. An upload streams through: bodies up to one part go
//! in one `put` (R2 checks their SHA-256), larger ones as an R2 multipart upload of 8 MiB
//! parts, so a Worker holds at most one part in memory whatever the file's size. The
//! object appears only when the upload completes, so a reader never sees a partial blob.

use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use openma_core::ports::{BlobError, BlobInfo, BlobMeter, BlobStore, ByteStream};
use worker::send::SendWrapper;
use worker::{Bucket, Env, MultipartUpload, UploadedPart};

use crate::send;

/// The R2 binding the Workers keep blobs in (uploads, workspace snapshots, archived logs).
pub const BLOBS: &str = "BLOBS";
/// Every part but the last has this size (R2 wants at least 5 MiB, all equal).
const PART_BYTES: usize = 8 * 1024 * 1024;

/// A JavaScript-backed stream asserted `Send`: workerd runs an isolate on one thread (see
/// [`crate::send`]).
pub struct SendStream<S>(pub Pin<Box<S>>);

unsafe impl<S> Send for SendStream<S> {}

impl<S: Stream> Stream for SendStream<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        self.0.as_mut().poll_next(cx)
    }
}

pub struct R2Blobs {
    bucket: SendWrapper<Bucket>,
}

fn backend(e: worker::Error) -> BlobError {
    BlobError::Backend(format!("R2: {e}"))
}

impl R2Blobs {
    pub fn new(env: &Env) -> Result<Self, BlobError> {
        Ok(R2Blobs { bucket: SendWrapper(env.bucket(BLOBS).map_err(|e| BlobError::Backend(format!("binding `{BLOBS}`: {e}")))?) })
    }

    async fn put_parts(&self, key: &str, mut body: ByteStream, max_bytes: u64) -> Result<BlobInfo, BlobError> {
        let mut meter = BlobMeter::new(max_bytes);
        let mut buf: Vec<u8> = Vec::new();
        let mut upload: Option<(MultipartUpload, Vec<UploadedPart>)> = None;
        let fed: Result<(), BlobError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                meter.feed(&chunk)?;
                buf.extend_from_slice(&chunk);
                while buf.len() >= PART_BYTES {
                    let part: Vec<u8> = buf.drain(..PART_BYTES).collect();
                    if upload.is_none() {
                        upload = Some((self.bucket.create_multipart_upload(key).execute().await.map_err(backend)?, Vec::new()));
                    }
                    let (u, parts) = upload.as_mut().expect("created above");
                    let number = u16::try_from(parts.len() + 1).map_err(|_| BlobError::TooLarge(max_bytes))?;
                    parts.push(u.upload_part(number, part).await.map_err(backend)?);
                }
            }
            Ok(())
        }
        .await;
        let (info, digest) = meter.finish();
        match (fed, upload) {
            (Err(e), Some((u, _))) => {
                let _ = u.abort().await;
                Err(e)
            }
            (Err(e), None) => Err(e),
            (Ok(()), None) => {
                // R2 refuses the object if the bytes do not hash to what was streamed
                self.bucket.put(key, buf).sha256(digest).execute().await.map_err(backend)?;
                Ok(info)
            }
            (Ok(()), Some((u, mut parts))) => {
                let finished: Result<(), BlobError> = async {
                    if !buf.is_empty() {
                        let number = u16::try_from(parts.len() + 1).map_err(|_| BlobError::TooLarge(max_bytes))?;
                        parts.push(u.upload_part(number, std::mem::take(&mut buf)).await.map_err(backend)?);
                    }
                    Ok(())
                }
                .await;
                if let Err(e) = finished {
                    let _ = u.abort().await;
                    return Err(e);
                }
                u.complete(parts).await.map_err(backend)?;
                Ok(info)
            }
        }
    }
}

#[async_trait]
impl BlobStore for R2Blobs {
    async fn put(&self, key: &str, body: ByteStream, max_bytes: u64) -> Result<BlobInfo, BlobError> {
        send!(self.put_parts(key, body, max_bytes))
    }

    async fn get(&self, key: &str) -> Result<Option<ByteStream>, BlobError> {
        let Some(object) = send!(self.bucket.get(key).execute()).map_err(backend)? else { return Ok(None) };
        let Some(body) = object.body() else { return Ok(None) };
        let stream = body.stream().map_err(backend)?.map(|chunk| chunk.map_err(backend));
        Ok(Some(SendStream(Box::pin(stream)).boxed()))
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        send!(self.bucket.delete(key)).map_err(backend)
    }
}
