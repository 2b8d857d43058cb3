//! The local-directory adapter of the core's `BlobStore` port (`OPENMA_BLOB_URL=file://…`).
//!
//! An object is a file at `<dir>/<key>`. A put streams into a temporary file in
//! `<dir>/.incoming/`, hashing as it goes, syncs it and renames it into place, so a reader
//! (or a crash) sees either nothing or the whole object.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::StreamExt;
use openma_core::ports::{BlobError, BlobInfo, BlobStore, ByteStream};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const READ_CHUNK: usize = 256 * 1024;

pub struct LocalBlobs {
    dir: PathBuf,
}

impl LocalBlobs {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalBlobs { dir: dir.into() }
    }

    /// Keys come from the core (`files/<tenant>/<id>`); anything else is refused rather
    /// than resolved, so no key can name a path outside the directory.
    fn path_of(&self, key: &str) -> Result<PathBuf, BlobError> {
        let plain = !key.is_empty()
            && key.split('/').all(|seg| {
                !seg.is_empty() && !seg.starts_with('.') && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
        if !plain {
            return Err(BlobError::Backend(format!("invalid blob key `{key}`")));
        }
        Ok(self.dir.join(key))
    }
}

fn backend(what: &str, path: &Path, e: std::io::Error) -> BlobError {
    BlobError::Backend(format!("{what} {}: {e}", path.display()))
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn put(&self, key: &str, mut body: ByteStream, max_bytes: u64) -> Result<BlobInfo, BlobError> {
        let dest = self.path_of(key)?;
        let incoming = self.dir.join(".incoming");
        tokio::fs::create_dir_all(&incoming).await.map_err(|e| backend("cannot create", &incoming, e))?;
        let tmp = incoming.join(ulid::Ulid::new().to_string());
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await.map_err(|e| backend("cannot create", &tmp, e))?;
            let mut hash = Sha256::new();
            let mut size: u64 = 0;
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                size += chunk.len() as u64;
                if size > max_bytes {
                    return Err(BlobError::TooLarge(max_bytes));
                }
                hash.update(&chunk);
                file.write_all(&chunk).await.map_err(|e| backend("cannot write", &tmp, e))?;
            }
            file.sync_all().await.map_err(|e| backend("cannot sync", &tmp, e))?;
            if let Some(parent) = dest.parent() {
                tokio::fs::create_dir_all(parent).await.map_err(|e| backend("cannot create", parent, e))?;
            }
            tokio::fs::rename(&tmp, &dest).await.map_err(|e| backend("cannot store", &dest, e))?;
            let sha256 = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
            Ok(BlobInfo { size, sha256 })
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    async fn get(&self, key: &str) -> Result<Option<ByteStream>, BlobError> {
        let path = self.path_of(key)?;
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(backend("cannot open", &path, e)),
        };
        let stream = async_stream::stream! {
            loop {
                let mut buf = vec![0u8; READ_CHUNK];
                match file.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        yield Ok(buf);
                    }
                    Err(e) => {
                        yield Err(backend("cannot read", &path, e));
                        break;
                    }
                }
            }
        };
        Ok(Some(stream.boxed()))
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(backend("cannot delete", &path, e)),
            _ => Ok(()),
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

    #[tokio::test]
    async fn put_get_delete_round_trip_with_hash_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::new(dir.path());
        let info = blobs.put("files/t/a", body(&[b"hello ", b"world"]), 100).await.unwrap();
        assert_eq!(info.size, 11);
        assert_eq!(info.sha256, "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
        assert_eq!(read_all(blobs.get("files/t/a").await.unwrap().unwrap()).await, b"hello world");

        // too large: refused, nothing stored, no temporary file left behind
        assert!(matches!(blobs.put("files/t/b", body(&[b"0123456789", b"x"]), 10).await, Err(BlobError::TooLarge(10))));
        assert!(blobs.get("files/t/b").await.unwrap().is_none());
        assert_eq!(std::fs::read_dir(dir.path().join(".incoming")).unwrap().count(), 0);

        blobs.delete("files/t/a").await.unwrap();
        blobs.delete("files/t/a").await.unwrap();
        assert!(blobs.get("files/t/a").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn keys_cannot_name_other_paths() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::new(dir.path());
        for key in ["../x", "/etc/passwd", "a//b", ".incoming/x", "a/../b", ""] {
            assert!(blobs.get(key).await.is_err(), "{key}");
        }
    }
}
