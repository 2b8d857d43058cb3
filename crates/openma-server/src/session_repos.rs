//! Cloning a session's `github_repository` resources into its workspace before the agent
//! starts, by `git` on the host (see `openma_sandbox`'s `clone_repository`).

use openma_core::DomainError;
use openma_core::repositories::{cannot_clone, clones};
use openma_sandbox::Sandboxes;
use openma_types::sessions::{GitHubRepositoryResourceParams, Session};

/// Clones every repository of a new session into its workspace. A repository that cannot be
/// cloned (not found, refused token, unknown branch) is the caller's error.
pub async fn clone_all(
    github_url: &str,
    sandboxes: &Sandboxes,
    session: &Session,
    params: &[GitHubRepositoryResourceParams],
) -> Result<(), DomainError> {
    for (url, clone) in clones(github_url, session, params)? {
        if let Err(why) = sandboxes.clone_repository(&session.id, &clone).await {
            return Err(cannot_clone(&url, &clone, &why));
        }
        tracing::info!(session_id = %session.id, repository = %url, path = %clone.mount_path, "cloned a repository into the session");
    }
    Ok(())
}
