//! `PLATFORM_ROOT_SECRET`, checked against the database's sealed verifier before anything
//! is sealed with it: the same rule as the native server's start-up
//! (`SecretBox::check_verifier`), run by `/health` on every call and by the routes that
//! seal secrets once per isolate.

use std::cell::RefCell;
use std::rc::Rc;

use openma_core::secrets::{RootSecret, SecretBox, VERIFIER_META_KEY, VerifierCheck};
use worker::Env;

use crate::errors::{ApiError, random};

/// The Workers secret holding the root secret (`wrangler secret put PLATFORM_ROOT_SECRET`).
pub const ROOT_SECRET: &str = "PLATFORM_ROOT_SECRET";

/// The control-plane database binding, where the verifier is kept.
const DB: &str = "DB";

thread_local! {
    /// The verified box of this isolate (an isolate is one thread; a new secret means a
    /// new deployment, hence new isolates).
    static VERIFIED: RefCell<Option<Rc<SecretBox>>> = const { RefCell::new(None) };
}

/// The box of the root secret once it opens this database's verifier, and whether this
/// call sealed the verifier (a new database); else what is wrong, for `/health`.
pub async fn verify(env: &Env) -> Result<(SecretBox, bool), String> {
    let text = env
        .secret(ROOT_SECRET)
        .map_err(|_| format!("{ROOT_SECRET} is not set: `openssl rand -base64 32 | wrangler secret put {ROOT_SECRET}`"))?
        .to_string();
    let root = RootSecret::from_text(&text).ok_or_else(|| format!("{ROOT_SECRET} must be at least 32 characters"))?;
    let secrets = SecretBox::new(root, vec![]);
    let db = env.d1(DB).map_err(|e| e.to_string())?;
    let stored = db
        .prepare("SELECT value FROM platform_meta WHERE key = ?1")
        .bind(&[VERIFIER_META_KEY.into()])
        .map_err(|e| e.to_string())?
        .first::<String>(Some("value"))
        .await
        .map_err(|e| e.to_string())?;
    match secrets.check_verifier(stored.as_deref(), random()) {
        VerifierCheck::Matches => Ok((secrets, false)),
        VerifierCheck::Mismatch => Err(format!(
            "{ROOT_SECRET} (key {}) is not the secret this database was sealed with; restore the original",
            secrets.current_key_id()
        )),
        VerifierCheck::Record(sealed) => {
            db.prepare("INSERT OR IGNORE INTO platform_meta (key, value) VALUES (?1, ?2)")
                .bind(&[VERIFIER_META_KEY.into(), sealed.into()])
                .map_err(|e| e.to_string())?
                .run()
                .await
                .map_err(|e| e.to_string())?;
            // Another isolate may have sealed first: only a verifier read back counts.
            Box::pin(verify(env)).await.map(|(s, _)| (s, true))
        }
    }
}

/// The verified box, for sealing and opening credential secrets; a 503 naming the problem
/// (as `/health` does) when the secret is missing or wrong.
pub async fn secret_box(env: &Env) -> Result<Rc<SecretBox>, ApiError> {
    if let Some(b) = VERIFIED.with_borrow(Clone::clone) {
        return Ok(b);
    }
    let (secrets, _) = verify(env).await.map_err(|e| {
        worker::console_error!("root secret: {e}");
        ApiError::new(503, format!("secrets are not available: {e}; see /health"))
    })?;
    let b = Rc::new(secrets);
    VERIFIED.set(Some(b.clone()));
    Ok(b)
}
