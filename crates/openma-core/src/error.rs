//! The two error layers of the core: what a store can fail with, and what a domain
//! operation reports to its caller. [`crate::http_error`] maps [`DomainError`] to HTTP.

/// A failure of a storage adapter.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint refused the write; the string names what collided.
    #[error("duplicate {0}")]
    Duplicate(String),
    /// The backend itself failed (I/O, connection, corrupt row).
    #[error("storage backend failure: {0}")]
    Backend(String),
}

/// The outcome of a domain operation that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// The request is malformed or asks for something unsupported (HTTP 400).
    #[error("{message}")]
    Invalid { message: String, code: Option<&'static str> },
    /// The named object does not exist for this tenant (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The object exists but what was asked of it is gone for good (HTTP 404 with a code,
    /// e.g. `file_expired`).
    #[error("{message}")]
    Gone { message: String, code: &'static str },
    /// The body is larger than this deployment accepts (HTTP 413).
    #[error("{0}")]
    TooLarge(String),
    /// The request conflicts with the object's current state (HTTP 409).
    #[error("{message}")]
    Conflict { message: String, code: Option<&'static str> },
    /// A memory is not in the state a request's precondition names (HTTP 409,
    /// `memory_precondition_failed_error`).
    #[error("{0}")]
    MemoryPrecondition(String),
    /// Another live memory of the store holds the path (HTTP 409, `memory_path_conflict_error`).
    #[error("{message}")]
    MemoryPathConflict { message: String, conflicting_memory_id: String },
    /// A spend limit refuses the work (HTTP 402, `billing_error`).
    #[error("{0}")]
    PaymentRequired(String),
    /// A quota is full for now (HTTP 429 with `retry-after`).
    #[error("{message}")]
    QuotaExceeded { message: String, retry_after_secs: u64 },
    /// The work cannot be done here right now but may succeed when retried (HTTP 503), e.g.
    /// the session is moving between the nodes of a cluster.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DomainError {
    pub fn invalid(message: impl Into<String>) -> Self {
        DomainError::Invalid { message: message.into(), code: None }
    }

    pub fn invalid_code(code: &'static str, message: impl Into<String>) -> Self {
        DomainError::Invalid { message: message.into(), code: Some(code) }
    }

    /// A well-formed request for a feature this deployment does not implement (yet).
    pub fn unsupported(what: impl std::fmt::Display) -> Self {
        DomainError::Invalid {
            message: format!("{what} is not supported by this server yet"),
            code: Some("unsupported_feature"),
        }
    }

    pub fn not_found(kind: &str, id: &str) -> Self {
        DomainError::NotFound(format!("{kind} `{id}` not found"))
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        DomainError::Conflict { message: message.into(), code: None }
    }
}

pub type DomainResult<T> = Result<T, DomainError>;
