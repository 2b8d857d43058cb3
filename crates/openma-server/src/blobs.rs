//! The core's `BlobStore` port over the `object_store` crate: a local directory
//! (`OPENMA_BLOB_URL=file:///…`, the default) or any S3-compatible store — AWS S3,
//! Cloudflare R2, MinIO — (`s3://bucket?endpoint=…&region=…`, credentials from the usual
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` variables).
//!
//! A put is a multipart upload fed chunk by chunk, hashed as it goes and aborted past the
//! size limit, so no body is ever held whole in memory and a reader (or a crash) sees
//! either nothing or the whole object. In a local directory a put is on disk (the file and
//! its directory entry synced) before it is reported done, since the row naming it is
//! committed right after.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use openma_core::ports::{BlobError, BlobInfo, BlobMeter, BlobStore, ByteStream};

/// Multipart part size (S3 wants at least 5 MiB for every part but the last).
const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts in flight at once per upload.
const PARTS_IN_FLIGHT: usize = 2;

pub struct ObjectBlobs {
    store: Arc<dyn ObjectStore>,
    describe: String,
    /// The directory of a local store, whose writes are synced.
    local: Option<std::path::PathBuf>,
}

/// Where blobs go, parsed from `OPENMA_BLOB_URL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobUrl {
    Local(std::path::PathBuf),
    S3 { bucket: String, endpoint: Option<String>, region: Option<String> },
}

impl BlobUrl {
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        if let Some(path) = raw.strip_prefix("file://") {
            anyhow::ensure!(path.starts_with('/'), "OPENMA_BLOB_URL `{raw}`: a file:// URL needs an absolute path");
            return Ok(BlobUrl::Local(path.into()));
        }
        let url = url::Url::parse(raw).map_err(|e| anyhow::anyhow!("OPENMA_BLOB_URL `{raw}` is not a URL: {e}"))?;
        anyhow::ensure!(url.scheme() == "s3", "OPENMA_BLOB_URL `{raw}`: use file:///path or s3://bucket?endpoint=…");
        let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| anyhow::anyhow!("OPENMA_BLOB_URL `{raw}` names no bucket"))?;
        let (mut endpoint, mut region) = (None, None);
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "endpoint" => endpoint = Some(v.into_owned()),
                "region" => region = Some(v.into_owned()),
                other => anyhow::bail!("OPENMA_BLOB_URL: unknown parameter `{other}` (known: endpoint, region)"),
            }
        }
        Ok(BlobUrl::S3 { bucket: bucket.to_owned(), endpoint, region })
    }
}

impl ObjectBlobs {
    pub fn open(url: &BlobUrl) -> anyhow::Result<Self> {
        match url {
            BlobUrl::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create blob dir {}: {e}", dir.display()))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(dir)?.with_automatic_cleanup(true);
                Ok(ObjectBlobs { store: Arc::new(store), describe: format!("file://{}", dir.display()), local: Some(dir.clone()) })
            }
            BlobUrl::S3 { bucket, endpoint, region } => {
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(e) = endpoint {
                    b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
                }
                if let Some(r) = region {
                    b = b.with_region(r);
                }
                let store = b.build()?;
                let describe = match endpoint {
                    Some(e) => format!("s3://{bucket} at {e}"),
                    None => format!("s3://{bucket}"),
                };
                Ok(ObjectBlobs { store: Arc::new(store), describe, local: None })
            }
        }
    }

    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// Writes and removes a probe object: what `/health` reports.
    pub async fn probe(&self) -> Result<(), String> {
        let path = ObjectPath::from(format!("health/{}", ulid::Ulid::new()));
        self.store.put(&path, bytes::Bytes::from_static(b"ok").into()).await.map_err(|e| e.to_string())?;
        self.store.delete(&path).await.map_err(|e| e.to_string())
    }

    /// Keys come from the core (`files/<tenant>/<id>`); anything else is refused.
    fn path_of(key: &str) -> Result<ObjectPath, BlobError> {
        let plain = !key.is_empty()
            && key.split('/').all(|seg| {
                !seg.is_empty() && !seg.starts_with('.') && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
        if !plain {
            return Err(BlobError::Backend(format!("invalid blob key `{key}`")));
        }
        Ok(ObjectPath::from(key))
    }
}

/// Syncs a file just renamed into place, and the directories up to it whose entries the
/// rename (or the directory's creation) changed, so a crash loses neither.
fn sync_to_disk(file: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(file)?.sync_all()?;
    let mut dir = file.parent();
    // `files/<tenant>/<id>`: the tenant's directory may be new, and so its parent's entry
    for _ in 0..3 {
        let Some(d) = dir else { break };
        std::fs::File::open(d)?.sync_all()?;
        dir = d.parent();
    }
    Ok(())
}

fn backend(e: object_store::Error) -> BlobError {
    BlobError::Backend(e.to_string())
}

#[async_trait]
impl BlobStore for ObjectBlobs {
    async fn put(&self, key: &str, mut body: ByteStream, max_bytes: u64) -> Result<BlobInfo, BlobError> {
        let path = Self::path_of(key)?;
        let upload = self.store.put_multipart(&path).await.map_err(backend)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut meter = BlobMeter::new(max_bytes);
        let fed: Result<(), BlobError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                meter.feed(&chunk)?;
                writer.wait_for_capacity(PARTS_IN_FLIGHT).await.map_err(backend)?;
                writer.write(&chunk);
            }
            Ok(())
        }
        .await;
        if let Err(e) = fed {
            let _ = writer.abort().await;
            return Err(e);
        }
        writer.finish().await.map_err(backend)?;
        if let Some(root) = &self.local {
            let file = root.join(key);
            tokio::task::spawn_blocking(move || sync_to_disk(&file))
                .await
                .map_err(|e| BlobError::Backend(e.to_string()))?
                .map_err(|e| BlobError::Backend(format!("cannot sync the blob to disk: {e}")))?;
        }
        Ok(meter.finish().0)
    }

    async fn get(&self, key: &str) -> Result<Option<ByteStream>, BlobError> {
        let path = Self::path_of(key)?;
        match self.store.get(&path).await {
            Ok(r) => Ok(Some(r.into_stream().map(|c| c.map(|b| b.to_vec()).map_err(backend)).boxed())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let path = Self::path_of(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(chunks: &[&[u8]]) -> ByteStream {
        let v: Vec<Result<Vec<u8>, BlobError>> = chunks.iter().map(|c| Ok(c.to_vec())).collect();
        futures::stream::iter(v).boxed()
    }

    async fn read_all(s: ByteStream) -> Vec<u8> {
        s.map(|c| c.unwrap()).concat().await
    }

    fn files_under(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| if e.path().is_dir() { files_under(&e.path()) } else { 1 })
            .sum()
    }

    #[tokio::test]
    async fn put_get_delete_round_trip_with_hash_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = ObjectBlobs::open(&BlobUrl::Local(dir.path().into())).unwrap();
        let info = blobs.put("files/t/a", body(&[b"hello ", b"world"]), 100).await.unwrap();
        assert_eq!(info.size, 11);
        assert_eq!(info.sha256, "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
        assert_eq!(read_all(blobs.get("files/t/a").await.unwrap().unwrap()).await, b"hello world");
        let big = vec![9u8; PART_BYTES * 2 + 17];
        let info = blobs.put("files/t/big", body(&[&big[..PART_BYTES + 1], &big[PART_BYTES + 1..]]), u64::MAX).await.unwrap();
        assert_eq!(info.size, big.len() as u64);
        assert_eq!(read_all(blobs.get("files/t/big").await.unwrap().unwrap()).await, big);

        // too large: refused, nothing stored, nothing half-written left behind
        assert!(matches!(blobs.put("files/t/b", body(&[b"0123456789", b"x"]), 10).await, Err(BlobError::TooLarge(10))));
        assert!(blobs.get("files/t/b").await.unwrap().is_none());
        assert_eq!(files_under(dir.path()), 2);

        blobs.delete("files/t/a").await.unwrap();
        blobs.delete("files/t/a").await.unwrap();
        assert!(blobs.get("files/t/a").await.unwrap().is_none());
        blobs.probe().await.unwrap();
    }

    #[tokio::test]
    async fn keys_cannot_name_other_paths() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = ObjectBlobs::open(&BlobUrl::Local(dir.path().into())).unwrap();
        for key in ["../x", "/etc/passwd", "a//b", ".incoming/x", "a/../b", ""] {
            assert!(blobs.get(key).await.is_err(), "{key}");
        }
    }

    #[test]
    fn blob_urls_parse() {
        assert_eq!(BlobUrl::parse("file:///var/lib/openma/blobs").unwrap(), BlobUrl::Local("/var/lib/openma/blobs".into()));
        assert_eq!(
            BlobUrl::parse("s3://files?endpoint=http://127.0.0.1:9000&region=auto").unwrap(),
            BlobUrl::S3 { bucket: "files".into(), endpoint: Some("http://127.0.0.1:9000".into()), region: Some("auto".into()) }
        );
        assert!(BlobUrl::parse("file://relative").is_err());
        assert!(BlobUrl::parse("s3://b?secret=x").is_err());
        assert!(BlobUrl::parse("gs://b").is_err());
    }
}
