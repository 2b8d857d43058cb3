//! A single-agent session's threads: exactly one, the primary thread, whose log and
//! stream are the session's. Derived from the session row, so it needs no storage.

use openma_types::query::{PageParams, ThreadFilter};
use openma_types::sessions::{Session, SessionThread};

use crate::error::{DomainError, DomainResult};

/// The primary thread's id: derived from the session's, so it is stable and needs no row.
pub fn primary_thread_id(session_id: &str) -> String {
    format!("sthr_{}", session_id.strip_prefix("sesn_").unwrap_or(session_id))
}

pub fn primary(s: Session) -> SessionThread {
    SessionThread {
        id: primary_thread_id(&s.id),
        tag: Default::default(),
        session_id: s.id,
        agent: s.agent,
        status: s.status,
        parent_thread_id: None,
        stats: s.stats,
        usage: s.usage,
        workflow_run_id: None,
        created_at: s.created_at,
        updated_at: s.updated_at,
        archived_at: s.archived_at,
    }
}

/// `thread_id` names a thread of `session`.
pub fn check(session: &Session, thread_id: &str) -> DomainResult<()> {
    if thread_id != primary_thread_id(&session.id) {
        return Err(DomainError::NotFound(format!("thread `{thread_id}` not found in session `{}`", session.id)));
    }
    Ok(())
}

/// The thread list: one page, the primary thread when its status is wanted.
pub fn list(session: Session, page: &PageParams, filter: &ThreadFilter) -> DomainResult<Vec<SessionThread>> {
    if let Some(l) = page.limit
        && !(1..=1000).contains(&l)
    {
        return Err(DomainError::invalid(format!("`limit` must be between 1 and 1000, got {l}")));
    }
    if page.page.as_deref().is_some_and(|p| !p.is_empty()) {
        return Err(DomainError::invalid("`page` cursor is not valid: the thread list has a single page"));
    }
    let wanted = filter.statuses.is_empty() || filter.statuses.contains(&session.status);
    Ok(if wanted { vec![primary(session)] } else { Vec::new() })
}

/// The primary thread lives and ends with its session.
pub fn archive_refused() -> DomainError {
    DomainError::invalid("the primary thread cannot be archived on its own; archive the session instead")
}
