//! The root secret: where it comes from, how a wrong one is caught, how it is rotated.
//!
//! `PLATFORM_ROOT_SECRET` (at least 32 characters) wins; otherwise embedded mode keeps a
//! generated secret in `<data dir>/root.secret` (mode 0600) and says loudly to back it
//! up. A sealed verifier in the database proves at start-up, before anything is written,
//! that the secret is the one the data was sealed with.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use openma_core::Platform;
use openma_core::secrets::{RootSecret, SecretBox, VERIFIER_META_KEY, VerifierCheck, platform_scope, verifier_binding};
use rand::Rng;
use secrecy::ExposeSecret;

use crate::config::Settings;

const FILE_NAME: &str = "root.secret";

/// A fresh random nonce for sealing.
pub fn nonce() -> [u8; 12] {
    let mut n = [0u8; 12];
    rand::rng().fill(&mut n);
    n
}

fn root_file(settings: &Settings) -> PathBuf {
    settings.data_dir.join(FILE_NAME)
}

fn read_file(path: &Path) -> anyhow::Result<RootSecret> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the root secret {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "the root secret file is readable by others; run chmod 600 on it");
        }
    }
    RootSecret::from_text(&text).with_context(|| format!("{} does not hold a root secret of at least 32 characters", path.display()))
}

fn write_new_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn random_text() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The current root: from the environment, the data dir, or generated on first start.
pub fn load_root(settings: &Settings) -> anyhow::Result<RootSecret> {
    if let Some(text) = &settings.root_secret {
        return RootSecret::from_text(text.expose_secret()).context("PLATFORM_ROOT_SECRET must be at least 32 characters");
    }
    let path = root_file(settings);
    if path.exists() {
        return read_file(&path);
    }
    if !settings.uses_sqlite() {
        bail!("set PLATFORM_ROOT_SECRET: with a shared database every node needs the same root secret");
    }
    std::fs::create_dir_all(&settings.data_dir)?;
    write_new_file(&path, &random_text())?;
    tracing::warn!(
        path = %path.display(),
        "GENERATED A NEW ROOT SECRET. Every stored secret is encrypted with it: back this file up now. Without it, vault credentials and model keys cannot be decrypted."
    );
    read_file(&path)
}

/// Checks (or, on a new database, records) that `secrets` opens this database's data.
pub async fn verify(platform: &Platform, secrets: &SecretBox) -> anyhow::Result<()> {
    let stored = platform.store.get_meta(VERIFIER_META_KEY).await?;
    match secrets.check_verifier(stored.as_deref(), nonce()) {
        VerifierCheck::Matches => Ok(()),
        VerifierCheck::Mismatch => bail!(
            "the root secret does not match the one this database was sealed with (key {} is configured). \
             Restore the original PLATFORM_ROOT_SECRET or data-dir root.secret; nothing was changed",
            secrets.current_key_id()
        ),
        VerifierCheck::Record(sealed) => {
            platform.store.put_meta(VERIFIER_META_KEY, &sealed, true).await?;
            Ok(())
        }
    }
}

/// Loads and verifies the root secret, installing it into the platform.
pub async fn install(platform: &mut Platform, settings: &Settings) -> anyhow::Result<()> {
    let current = load_root(settings)?;
    let previous = settings
        .previous_root_secret
        .as_ref()
        .map(|t| RootSecret::from_text(t.expose_secret()).context("PLATFORM_ROOT_SECRET_PREVIOUS must be at least 32 characters"))
        .transpose()?;
    let secrets = SecretBox::new(current, previous.into_iter().collect());
    verify(platform, &secrets).await?;
    platform.secrets = Some(Arc::new(secrets));
    Ok(())
}

/// `openma secrets rotate`: re-seals every stored secret under a new root while the old
/// one is still accepted, then retires the old one.
pub async fn rotate(platform: &Platform, settings: &Settings, new_secret: Option<String>) -> anyhow::Result<String> {
    let old = load_root(settings)?;
    let old_box = SecretBox::new(old.clone(), vec![]);
    verify(platform, &old_box).await.context("rotation needs the current root secret")?;
    let text = new_secret.unwrap_or_else(random_text);
    let new = RootSecret::from_text(&text).context("the new root secret must be at least 32 characters")?;
    let both = SecretBox::new(new.clone(), vec![old]);
    let scope = platform_scope();
    let sealed = platform.store.get_meta(VERIFIER_META_KEY).await?.context("no verifier")?;
    // every sealed value is re-sealed under the new root (the verifier last, once the
    // rest is done)
    let resealed = both.reseal(verifier_binding(&scope), &sealed, nonce()).map_err(|e| anyhow::anyhow!("{e}"))?;
    if settings.root_secret.is_some() {
        reseal_stored(platform, &both).await?;
        platform.store.put_meta(VERIFIER_META_KEY, &resealed, false).await?;
        return Ok(format!(
            "re-sealed under key {}. Set PLATFORM_ROOT_SECRET to the new secret on every node (keep the old one in PLATFORM_ROOT_SECRET_PREVIOUS until they all run with it):\n{text}",
            new.key_id()
        ));
    }
    let path = root_file(settings);
    let staged = path.with_extension("secret.new");
    let _ = std::fs::remove_file(&staged);
    write_new_file(&staged, &text)?;
    reseal_stored(platform, &both).await?;
    platform.store.put_meta(VERIFIER_META_KEY, &resealed, false).await?;
    std::fs::rename(&staged, &path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(format!("re-sealed under key {} and wrote the new root secret to {} — back it up", new.key_id(), path.display()))
}

/// Re-seals the sealed values kept in rows under `secrets`' current root: vault
/// credential secrets, model card keys, webhook signing secrets and integration secrets.
async fn reseal_stored(platform: &Platform, secrets: &SecretBox) -> anyhow::Result<()> {
    let (mut credentials, mut cards, mut webhooks, mut integrations) = (0, 0, 0, 0);
    for tenant in platform.list_tenants().await? {
        credentials += platform
            .reseal_credentials(&tenant.id, secrets)
            .await
            .with_context(|| format!("cannot re-seal the vault credentials of tenant `{}`", tenant.name))?;
        cards += platform
            .reseal_model_card_keys(&tenant.id, secrets)
            .await
            .with_context(|| format!("cannot re-seal the model card keys of tenant `{}`", tenant.name))?;
        webhooks += platform
            .reseal_webhook_secrets(&tenant.id, secrets)
            .await
            .with_context(|| format!("cannot re-seal the webhook signing secrets of tenant `{}`", tenant.name))?;
        integrations += platform
            .reseal_integration_secrets(&tenant.id, secrets)
            .await
            .with_context(|| format!("cannot re-seal the integration secrets of tenant `{}`", tenant.name))?;
    }
    tracing::info!(credentials, model_cards = cards, webhooks, integrations, "re-sealed stored secrets");
    Ok(())
}
