//! `openma backup` and `openma restore` for an embedded deployment.
//!
//! The database is copied with SQLite's `VACUUM INTO`, a consistent snapshot taken while
//! the server keeps running; blobs, the root secret (without which sealed secrets cannot
//! be read) and a manifest with checksums go next to it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Settings;

const MANIFEST: &str = "manifest.json";
const DB_FILE: &str = "openma.db";

#[derive(Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub openma_version: String,
    pub created_at: String,
    pub database_sha256: String,
    pub files: Vec<String>,
    pub root_secret_included: bool,
}

fn sha256_file(p: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

fn db_path(settings: &Settings) -> anyhow::Result<PathBuf> {
    if !settings.uses_sqlite() {
        bail!("backup and restore are for embedded (SQLite) deployments; back PostgreSQL up with pg_dump");
    }
    Ok(settings.data_dir.join(DB_FILE))
}

fn copy_tree(from: &Path, to: &Path, files: &mut Vec<String>, prefix: &str) -> anyhow::Result<()> {
    if !from.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type()?.is_dir() {
            copy_tree(&src, &dst, files, &format!("{prefix}{name}/"))?;
        } else if entry.file_type()?.is_file() {
            std::fs::copy(&src, &dst)?;
            files.push(format!("{prefix}{name}"));
        }
    }
    Ok(())
}

/// Writes a consistent backup of the data dir into `to` (which must be empty or new).
pub async fn backup(settings: &Settings, to: &Path) -> anyhow::Result<Manifest> {
    let db = db_path(settings)?;
    if !db.exists() {
        bail!("no database at {}", db.display());
    }
    if to.exists() && std::fs::read_dir(to)?.next().is_some() {
        bail!("{} is not empty", to.display());
    }
    std::fs::create_dir_all(to)?;
    let target = std::path::absolute(to.join(DB_FILE))?;
    openma_store_sql::sqlite::snapshot(&db, &target).await.context("online snapshot of the database failed")?;
    let mut files = vec![DB_FILE.to_owned()];
    copy_tree(&settings.data_dir.join("blobs"), &to.join("blobs"), &mut files, "blobs/")?;
    let secret = settings.data_dir.join("root.secret");
    let root_secret_included = secret.exists();
    if root_secret_included {
        std::fs::copy(&secret, to.join("root.secret"))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(to.join("root.secret"), std::fs::Permissions::from_mode(0o600))?;
        }
        files.push("root.secret".into());
    }
    let manifest = Manifest {
        format: 1,
        openma_version: env!("CARGO_PKG_VERSION").into(),
        created_at: crate::adapters::now_string(),
        database_sha256: sha256_file(&target)?,
        files,
        root_secret_included,
    };
    std::fs::write(to.join(MANIFEST), serde_json::to_vec_pretty(&manifest)?)?;
    Ok(manifest)
}

/// Restores a backup into the data dir; refuses to overwrite a database unless `force`.
pub fn restore(settings: &Settings, from: &Path, force: bool) -> anyhow::Result<Manifest> {
    let db = db_path(settings)?;
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(from.join(MANIFEST)).context("no manifest.json in the backup")?)
        .context("the backup's manifest.json is not valid")?;
    if sha256_file(&from.join(DB_FILE))? != manifest.database_sha256 {
        bail!("the backup's database does not match its manifest checksum");
    }
    if db.exists() && !force {
        bail!("{} already holds a database; pass --force to replace it (stop the server first)", settings.data_dir.display());
    }
    std::fs::create_dir_all(&settings.data_dir)?;
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(settings.data_dir.join(format!("{DB_FILE}{suffix}")));
    }
    let mut ignored = Vec::new();
    std::fs::copy(from.join(DB_FILE), &db)?;
    copy_tree(&from.join("blobs"), &settings.data_dir.join("blobs"), &mut ignored, "")?;
    if manifest.root_secret_included {
        std::fs::copy(from.join("root.secret"), settings.data_dir.join("root.secret"))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in [db.clone(), settings.data_dir.join("root.secret")] {
            if f.exists() {
                std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(manifest)
}
