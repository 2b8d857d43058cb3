//! Request parsing at the edge, shared by every deployment: a JSON body or a query string
//! into a typed value, with errors that name the offending field. The transports (axum
//! natively, `worker` on Cloudflare) only read the bytes.

use serde::de::DeserializeOwned;

use crate::error::{DomainError, DomainResult};

/// A JSON request body. An empty body reads as `{}` (the SDKs send empty POSTs with a
/// JSON content type).
pub fn json_body<T: DeserializeOwned>(bytes: &[u8]) -> DomainResult<T> {
    let raw: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    let de = &mut serde_json::Deserializer::from_slice(raw);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            DomainError::invalid(format!("the request body is not valid JSON: {inner}"))
        } else if path == "." {
            DomainError::invalid(format!("invalid request body: {inner}"))
        } else {
            DomainError::invalid(format!("invalid `{path}`: {inner}"))
        }
    })
}

/// A query string, with the SDK's bracket forms (`statuses[]=…`, `created_at[gte]=…`).
/// Unknown parameters (such as the SDK's `beta=true`) are ignored.
pub fn query<T: DeserializeOwned>(query: &str) -> DomainResult<T> {
    serde_html_form::from_str(query).map_err(|e| DomainError::invalid(format!("invalid query parameters: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openma_types::query::{CreatedFilter, PageParams};

    #[derive(Debug, serde::Deserialize)]
    struct Body {
        #[allow(dead_code)]
        name: String,
    }

    #[test]
    fn an_empty_body_reads_as_an_empty_object() {
        let e = json_body::<Body>(b"  \n").unwrap_err();
        assert!(e.to_string().contains("missing field `name`"), "{e}");
    }

    #[test]
    fn a_type_error_names_the_field_path() {
        let e = json_body::<Body>(br#"{"name": 3}"#).unwrap_err();
        assert!(e.to_string().starts_with("invalid `name`:"), "{e}");
        let e = json_body::<Body>(b"{").unwrap_err();
        assert!(e.to_string().contains("not valid JSON"), "{e}");
    }

    #[test]
    fn query_strings_take_brackets_and_ignore_unknown_keys() {
        let p: PageParams = query("limit=5&beta=true&page=abc").unwrap();
        assert_eq!((p.limit, p.page.as_deref()), (Some(5), Some("abc")));
        let c: CreatedFilter = query("created_at%5Bgte%5D=2026-01-01T00:00:00Z").unwrap();
        assert!(c.created_at_gte.is_some());
        assert!(query::<PageParams>("limit=many").is_err());
    }
}

/// A multipart body that cannot be read: `413` past the size limit, else `400`.
pub fn multipart_error(e: multer::Error) -> DomainError {
    match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            DomainError::TooLarge("the upload is larger than this server accepts".into())
        }
        e => DomainError::invalid(format!("the multipart body cannot be read: {e}")),
    }
}

/// A multipart form (`boundary` from its content type) read as `body` streams in, refused
/// past `max_bytes` in all (framing included).
pub fn multipart_form<S, E>(body: S, boundary: String, max_bytes: u64) -> multer::Multipart<'static>
where
    S: futures::Stream<Item = Result<multer::bytes::Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let limits = multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(max_bytes));
    multer::Multipart::with_constraints(body, boundary, limits)
}

/// The boundary of a `multipart/form-data` content type.
pub fn multipart_boundary(content_type: &str) -> DomainResult<String> {
    multer::parse_boundary(content_type).map_err(|e| DomainError::invalid(format!("expected a multipart/form-data body: {e}")))
}
