//! Cloning a session's `github_repository` resources into its workspace before the agent
//! starts. `git` runs on the host (sandboxes have no network) with the token handed to it
//! as an HTTP header through the environment: never on a command line, in the remote URL,
//! in `.git/config`, in the sandbox, a log line or the event log.

use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use openma_core::DomainError;
use openma_core::repositories::owner_repo;
use openma_sandbox::Sandboxes;
use openma_types::sessions::{Checkout, GitHubRepositoryResource, GitHubRepositoryResourceParams, Session, SessionResource};

const CLONE_TIMEOUT: Duration = Duration::from_secs(300);
const GIT: &str = "git";

/// The session's repositories paired with the tokens of the create request (same order).
pub fn clones<'a>(session: &'a Session, params: &'a [GitHubRepositoryResourceParams]) -> Vec<(&'a GitHubRepositoryResource, Option<&'a str>)> {
    let repos = session.resources.iter().filter_map(|r| match r {
        SessionResource::GitHubRepository(g) => Some(g),
        _ => None,
    });
    repos.zip(params).map(|(r, p)| (r, p.authorization_token.as_ref().map(|t| t.0.as_str()))).collect()
}

/// Runs git quietly with a clean environment (no user config, no prompts), the token (if
/// any) as `Authorization: Basic x-access-token:<token>` the way GitHub takes it.
async fn git(args: &[&str], token: Option<&str>, cwd: Option<&std::path::Path>) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new(GIT);
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", "/nonexistent")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .env("LANG", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    if let Some(t) = token {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{t}"));
        cmd.env("GIT_CONFIG_COUNT", "1").env("GIT_CONFIG_KEY_0", "http.extraHeader").env("GIT_CONFIG_VALUE_0", format!("Authorization: Basic {basic}"));
    }
    let out = tokio::time::timeout(CLONE_TIMEOUT, cmd.output())
        .await
        .map_err(|_| format!("git did not finish within {} s", CLONE_TIMEOUT.as_secs()))?
        .map_err(|e| format!("git cannot be run ({e}); install it with `apt-get install git`"))?;
    if out.status.success() {
        return Ok(());
    }
    let mut msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if let Some(t) = token {
        msg = msg.replace(t, "[token]");
    }
    Err(msg.lines().last().unwrap_or("git failed").to_owned())
}

/// Clones every repository of a new session into its workspace. A repository that cannot be
/// cloned (not found, refused token, unknown branch) is the caller's error.
pub async fn clone_all(
    github_url: &str,
    sandboxes: &Sandboxes,
    session: &Session,
    params: &[GitHubRepositoryResourceParams],
) -> Result<(), DomainError> {
    for (repo, token) in clones(session, params) {
        let (owner, name) = owner_repo(&repo.url).ok_or_else(|| DomainError::invalid(format!("`{}` is not a GitHub repository URL", repo.url)))?;
        let remote = format!("{github_url}/{owner}/{name}.git");
        let staged = sandboxes.staging_dir(&session.id).map_err(|e| DomainError::Store(openma_core::StoreError::Backend(e.to_string())))?;
        let dest = staged.join("repo");
        let dest_s = dest.to_string_lossy().into_owned();
        let result = async {
            let mut args = vec!["clone", "--quiet", "--no-recurse-submodules"];
            if let Some(Checkout::Branch { name: branch }) = &repo.checkout {
                args.extend(["--branch", branch.as_str()]);
            }
            args.extend(["--", remote.as_str(), dest_s.as_str()]);
            git(&args, token, None).await?;
            if let Some(Checkout::Commit { sha }) = &repo.checkout {
                git(&["checkout", "--quiet", "--detach", sha.as_str(), "--"], None, Some(&dest)).await?;
            }
            Ok::<(), String>(())
        }
        .await;
        let moved = result.and_then(|()| sandboxes.move_into_workspace(&session.id, &dest, &repo.mount_path).map_err(|e| e.to_string()));
        let _ = std::fs::remove_dir_all(&staged);
        if let Err(why) = moved {
            return Err(DomainError::invalid(format!("cannot clone {} into {}: {why}", repo.url, repo.mount_path)));
        }
        tracing::info!(session_id = %session.id, repository = %repo.url, path = %repo.mount_path, "cloned a repository into the session");
    }
    Ok(())
}
