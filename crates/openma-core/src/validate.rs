//! Field rules shared by every resource: lengths, metadata, hostnames, URLs.

use openma_types::{Metadata, MetadataPatch};

use crate::error::{DomainError, DomainResult};

pub const METADATA_MAX_KEYS: usize = 16;
pub const METADATA_MAX_KEY_CHARS: usize = 64;
pub const METADATA_MAX_VALUE_CHARS: usize = 512;

/// Checks a string's length in characters (`min..=max`).
pub fn length(field: &str, value: &str, min: usize, max: usize) -> DomainResult<()> {
    let n = value.chars().count();
    if n < min {
        return Err(if min == 1 {
            DomainError::invalid(format!("`{field}` must not be empty"))
        } else {
            DomainError::invalid(format!("`{field}` must be at least {min} characters"))
        });
    }
    if n > max {
        return Err(DomainError::invalid(format!("`{field}` must be at most {max} characters, got {n}")));
    }
    Ok(())
}

/// Checks an optional string's maximum length.
pub fn max_length(field: &str, value: Option<&str>, max: usize) -> DomainResult<()> {
    match value {
        Some(v) => length(field, v, 0, max),
        None => Ok(()),
    }
}

/// Checks the metadata limits: ≤16 pairs, keys 1–64 characters, values ≤512.
pub fn metadata(bag: &Metadata) -> DomainResult<()> {
    let bad = |m: String| DomainError::invalid_code("invalid_metadata", m);
    if bag.len() > METADATA_MAX_KEYS {
        return Err(bad(format!("`metadata` may hold at most {METADATA_MAX_KEYS} keys, got {}", bag.len())));
    }
    for (k, v) in bag {
        let kn = k.chars().count();
        if kn == 0 || kn > METADATA_MAX_KEY_CHARS {
            return Err(bad(format!("`metadata` keys must be 1-{METADATA_MAX_KEY_CHARS} characters, got {kn}")));
        }
        let vn = v.chars().count();
        if vn > METADATA_MAX_VALUE_CHARS {
            return Err(bad(format!(
                "`metadata` value of `{k}` must be at most {METADATA_MAX_VALUE_CHARS} characters, got {vn}"
            )));
        }
    }
    Ok(())
}

/// Applies a metadata patch (`null` deletes; with `empty_deletes`, `""` deletes too) and
/// checks the limits on the resulting bag.
pub fn patch_metadata(current: &Metadata, patch: &MetadataPatch, empty_deletes: bool) -> DomainResult<Metadata> {
    let mut next = current.clone();
    for (k, v) in patch {
        match v {
            Some(v) if !(empty_deletes && v.is_empty()) => {
                next.insert(k.clone(), v.clone());
            }
            _ => {
                next.remove(k);
            }
        }
    }
    metadata(&next)?;
    Ok(next)
}

/// A plain hostname (`docs.example.com`) or a wildcard (`*.example.com`): no scheme,
/// port, path or spaces.
pub fn hostname(field: &str, host: &str, allow_wildcard: bool) -> DomainResult<()> {
    let bare = if allow_wildcard { host.strip_prefix("*.").unwrap_or(host) } else { host };
    let ok = !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(format!(
            "`{field}` entry `{host}` must be a plain hostname such as `docs.example.com` (no scheme, port or path)"
        )))
    }
}

/// An absolute `http`/`https` URL with a host, at most 2,048 characters.
pub fn http_url(field: &str, url: &str) -> DomainResult<()> {
    length(field, url, 1, 2048)?;
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        url.get(8..)
    } else if lower.starts_with("http://") {
        url.get(7..)
    } else {
        None
    };
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    match host {
        Some(h) if !h.is_empty() && !h.contains(char::is_whitespace) && !url.contains(char::is_whitespace) => Ok(()),
        _ => Err(DomainError::invalid(format!("`{field}` must be an absolute http(s) URL, got `{url}`"))),
    }
}

/// An id of the expected prefix, from a path or a body. Malformed ids cannot exist, so
/// they are reported as not found, exactly like a missing one.
pub fn looks_like_id(id: &str, prefix: &str) -> bool {
    id.len() <= 128 && id.starts_with(prefix) && id[prefix.len()..].bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_limits_are_enforced() {
        let mut m = Metadata::new();
        for i in 0..16 {
            m.insert(format!("k{i}"), "v".into());
        }
        assert!(metadata(&m).is_ok());
        m.insert("k16".into(), "v".into());
        assert!(metadata(&m).is_err());
        let long_key: Metadata = [("k".repeat(65), "v".to_string())].into();
        assert!(metadata(&long_key).is_err());
        let long_value: Metadata = [("k".to_string(), "v".repeat(513))].into();
        assert!(metadata(&long_value).is_err());
    }

    #[test]
    fn metadata_patch_upserts_and_deletes() {
        let cur: Metadata = [("a".to_string(), "1".to_string()), ("b".to_string(), "2".to_string())].into();
        let patch: MetadataPatch = [("a".to_string(), None), ("c".to_string(), Some("3".to_string()))].into();
        let next = patch_metadata(&cur, &patch, false).unwrap();
        assert_eq!(next, [("b".to_string(), "2".to_string()), ("c".to_string(), "3".to_string())].into());
        let empty: MetadataPatch = [("b".to_string(), Some(String::new()))].into();
        assert!(!patch_metadata(&cur, &empty, true).unwrap().contains_key("b"));
        assert_eq!(patch_metadata(&cur, &empty, false).unwrap()["b"], "");
    }

    #[test]
    fn hostnames_and_urls() {
        assert!(hostname("h", "docs.example.com", false).is_ok());
        assert!(hostname("h", "*.example.com", true).is_ok());
        assert!(hostname("h", "*.example.com", false).is_err());
        assert!(hostname("h", "https://example.com", true).is_err());
        assert!(hostname("h", "example.com:443", true).is_err());
        assert!(http_url("u", "https://mcp.example.com/sse").is_ok());
        assert!(http_url("u", "ftp://x").is_err());
        assert!(http_url("u", "https://").is_err());
        assert!(http_url("u", "HTTPS://Example.com/x").is_ok());
    }
}
