//! Encryption of secrets at rest.
//!
//! One root secret; keys derived from it with HKDF-SHA256 per purpose and per tenant, so
//! a key never serves two purposes or two tenants. AES-256-GCM with a random 96-bit nonce.
//! A sealed value names the root it was sealed under (`key id`), and its associated data
//! binds it to its row and field: a ciphertext copied to another row, field or tenant does
//! not decrypt. Several roots can be accepted at once, which is what rotation needs.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use sha2::{Digest, Sha256};

use crate::tenancy::TenantId;

/// Format version of sealed values.
const VERSION: &str = "v1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the sealed value is malformed")]
    Malformed,
    #[error("the sealed value was made with root key `{0}`, which is not configured")]
    UnknownKey(String),
    #[error("the sealed value does not decrypt: it was tampered with, or belongs to another row")]
    Rejected,
}

/// A 32-byte root secret.
#[derive(Clone)]
pub struct RootSecret([u8; 32]);

impl std::fmt::Debug for RootSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RootSecret({})", self.key_id())
    }
}

impl RootSecret {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        RootSecret(bytes)
    }

    /// Derives a root from operator-supplied text (at least 32 characters).
    pub fn from_text(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.len() < 32 {
            return None;
        }
        Some(RootSecret(Sha256::digest(text.as_bytes()).into()))
    }

    /// A short public identifier of this root, stored with every value it seals.
    pub fn key_id(&self) -> String {
        let d = Sha256::new().chain_update(b"openma root key id").chain_update(self.0).finalize();
        d[..6].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn derive(&self, tenant: &TenantId, purpose: &str) -> Aes256Gcm {
        let hk = Hkdf::<Sha256>::new(Some(b"openma secrets v1"), &self.0);
        let mut key = [0u8; 32];
        let info = format!("openma/{purpose}/{}", tenant.as_str());
        hk.expand(info.as_bytes(), &mut key).expect("32 bytes is a valid HKDF output length");
        Aes256Gcm::new(&key.into())
    }
}

/// Where a sealed value belongs: the associated data that binds it.
#[derive(Clone, Copy, Debug)]
pub struct Binding<'a> {
    pub purpose: &'a str,
    pub tenant: &'a TenantId,
    /// The row the value lives in (e.g. a credential id).
    pub owner: &'a str,
    /// The field of that row (e.g. `token`).
    pub field: &'a str,
}

impl Binding<'_> {
    fn aad(&self) -> Vec<u8> {
        format!("{VERSION}\u{0}{}\u{0}{}\u{0}{}\u{0}{}", self.purpose, self.tenant.as_str(), self.owner, self.field).into_bytes()
    }
}

/// The roots in force: the first seals, all of them open.
#[derive(Clone, Debug)]
pub struct SecretBox {
    roots: Vec<RootSecret>,
}

impl SecretBox {
    pub fn new(current: RootSecret, also_accepted: Vec<RootSecret>) -> Self {
        let mut roots = vec![current];
        roots.extend(also_accepted);
        SecretBox { roots }
    }

    pub fn current_key_id(&self) -> String {
        self.roots[0].key_id()
    }

    /// A shared secret of the deployment for `purpose` (hex), derived from every root in
    /// force, current first: nodes that share the roots agree on it without storing it.
    pub fn tokens(&self, purpose: &str) -> Vec<String> {
        self.roots
            .iter()
            .map(|root| {
                let hk = Hkdf::<Sha256>::new(Some(b"openma tokens v1"), &root.0);
                let mut key = [0u8; 32];
                hk.expand(format!("openma/token/{purpose}").as_bytes(), &mut key).expect("32 bytes is a valid HKDF output length");
                key.iter().map(|b| format!("{b:02x}")).collect()
            })
            .collect()
    }

    /// Seals `plaintext` under the current root. `nonce` must be fresh random bytes.
    pub fn seal(&self, at: Binding<'_>, plaintext: &[u8], nonce: [u8; 12]) -> String {
        let root = &self.roots[0];
        let cipher = root.derive(at.tenant, at.purpose);
        let aad = at.aad();
        let ct = cipher
            .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad: &aad })
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        format!("{VERSION}.{}.{}.{}", root.key_id(), URL_SAFE_NO_PAD.encode(nonce), URL_SAFE_NO_PAD.encode(ct))
    }

    pub fn open(&self, at: Binding<'_>, sealed: &str) -> Result<Vec<u8>, SecretError> {
        let mut parts = sealed.split('.');
        let (Some(VERSION), Some(key_id), Some(nonce), Some(ct), None) = (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(SecretError::Malformed);
        };
        let root = self.roots.iter().find(|r| r.key_id() == key_id).ok_or_else(|| SecretError::UnknownKey(key_id.to_owned()))?;
        let nonce = URL_SAFE_NO_PAD.decode(nonce).map_err(|_| SecretError::Malformed)?;
        let ct = URL_SAFE_NO_PAD.decode(ct).map_err(|_| SecretError::Malformed)?;
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| SecretError::Malformed)?;
        let aad = at.aad();
        root.derive(at.tenant, at.purpose)
            .decrypt(&Nonce::from(nonce), Payload { msg: &ct, aad: &aad })
            .map_err(|_| SecretError::Rejected)
    }

    /// Re-seals a value under the current root (rotation).
    pub fn reseal(&self, at: Binding<'_>, sealed: &str, nonce: [u8; 12]) -> Result<String, SecretError> {
        let plain = self.open(at, sealed)?;
        Ok(self.seal(at, &plain, nonce))
    }
}

/// The fixed value sealed into the database so a wrong root secret is caught at start-up.
pub const VERIFIER_PLAINTEXT: &[u8] = b"openma root secret verifier";

/// The `platform_meta` key the sealed verifier is stored under (native and Workers alike).
pub const VERIFIER_META_KEY: &str = "root_secret_verifier";

/// The scope platform-wide sealed values are bound to.
pub fn platform_scope() -> TenantId {
    TenantId::from_trusted("platform")
}

/// What a database's stored verifier says of the configured root secret.
#[derive(Debug, PartialEq, Eq)]
pub enum VerifierCheck {
    /// The verifier opens: the secret is the one the database was sealed with.
    Matches,
    /// It does not: another secret sealed this database's values.
    Mismatch,
    /// No verifier yet (a new database): store this one under [`VERIFIER_META_KEY`],
    /// only if still absent.
    Record(String),
}

impl SecretBox {
    /// Checks `stored` (the value under [`VERIFIER_META_KEY`], if any) against this box;
    /// the caller does the reading and writing, so every deployment applies one rule.
    pub fn check_verifier(&self, stored: Option<&str>, nonce: [u8; 12]) -> VerifierCheck {
        let scope = platform_scope();
        let at = verifier_binding(&scope);
        match stored {
            Some(sealed) => match self.open(at, sealed) {
                Ok(p) if p == VERIFIER_PLAINTEXT => VerifierCheck::Matches,
                _ => VerifierCheck::Mismatch,
            },
            None => VerifierCheck::Record(self.seal(at, VERIFIER_PLAINTEXT, nonce)),
        }
    }
}

/// The binding of the verifier.
pub fn verifier_binding(platform: &TenantId) -> Binding<'_> {
    Binding { purpose: "verifier", tenant: platform, owner: "platform", field: "root" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(b: u8) -> RootSecret {
        RootSecret::from_bytes([b; 32])
    }

    #[test]
    fn a_recorded_verifier_matches_its_own_root_only() {
        let mine = SecretBox::new(root(1), vec![]);
        let VerifierCheck::Record(sealed) = mine.check_verifier(None, [3; 12]) else { panic!("a new database records one") };
        assert_eq!(mine.check_verifier(Some(&sealed), [4; 12]), VerifierCheck::Matches);
        assert_eq!(SecretBox::new(root(2), vec![]).check_verifier(Some(&sealed), [4; 12]), VerifierCheck::Mismatch);
        assert_eq!(mine.check_verifier(Some("garbage"), [4; 12]), VerifierCheck::Mismatch);
    }

    #[test]
    fn sealed_values_open_only_in_their_own_row_field_and_tenant() {
        let b = SecretBox::new(root(1), vec![]);
        let t1 = TenantId::from_trusted("tenant_a");
        let t2 = TenantId::from_trusted("tenant_b");
        let at = Binding { purpose: "credential", tenant: &t1, owner: "vcrd_1", field: "token" };
        let sealed = b.seal(at, b"s3cret", [7; 12]);
        assert!(!sealed.contains("s3cret"));
        assert_eq!(b.open(at, &sealed).unwrap(), b"s3cret");
        for other in [
            Binding { owner: "vcrd_2", ..at },
            Binding { field: "secret_value", ..at },
            Binding { tenant: &t2, ..at },
            Binding { purpose: "model_card", ..at },
        ] {
            assert_eq!(b.open(other, &sealed), Err(SecretError::Rejected));
        }
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(b.open(at, &tampered).is_err());
    }

    #[test]
    fn rotation_accepts_the_old_root_until_everything_is_resealed() {
        let t = TenantId::from_trusted("t");
        let at = Binding { purpose: "credential", tenant: &t, owner: "o", field: "f" };
        let old = SecretBox::new(root(1), vec![]);
        let sealed = old.seal(at, b"x", [1; 12]);
        let both = SecretBox::new(root(2), vec![root(1)]);
        let resealed = both.reseal(at, &sealed, [2; 12]).unwrap();
        let new_only = SecretBox::new(root(2), vec![]);
        assert_eq!(new_only.open(at, &resealed).unwrap(), b"x");
        assert_eq!(new_only.open(at, &sealed), Err(SecretError::UnknownKey(root(1).key_id())));
    }

    #[test]
    fn text_roots_need_32_characters() {
        assert!(RootSecret::from_text("short").is_none());
        assert!(RootSecret::from_text(&"x".repeat(32)).is_some());
    }
}
