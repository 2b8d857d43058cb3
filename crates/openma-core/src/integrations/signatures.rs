//! The providers' webhook signatures: HMAC-SHA256, hex encoded.

use hmac::{KeyInit, Mac};

/// HMAC-SHA256 of `parts`, for the providers' signatures.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> hmac::Hmac<sha2::Sha256> {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac
}

/// True when `signature_hex` is the HMAC-SHA256 of `parts` under `key` (compared in constant time).
pub fn verify_hex(key: &[u8], parts: &[&[u8]], signature_hex: &str) -> bool {
    hex_decode(signature_hex).is_some_and(|sig| hmac_sha256(key, parts).verify_slice(&sig).is_ok())
}

/// The hex HMAC-SHA256 of `parts` (what a sender puts in its signature header).
pub fn sign_hex(key: &[u8], parts: &[&[u8]]) -> String {
    hmac_sha256(key, parts).finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}
