//! GitHub repositories as session resources: what a `github_repository` resource may say,
//! and the clone the server makes of it before the agent starts. The authorization token
//! is only ever in the request and the clone: never in the resource, the log or a row.

use openma_types::Timestamp;
use openma_types::sandbox::RepositoryClone;
use openma_types::sessions::{Checkout, GitHubRepositoryResource, GitHubRepositoryResourceParams, Session, SessionResource};

use crate::error::{DomainError, DomainResult};

pub const WORKSPACE: &str = "/workspace";
/// Repositories one session may clone.
pub const REPOSITORIES_PER_SESSION: usize = 16;

/// `https://github.com/<owner>/<repo>` → (`owner`, `repo`).
pub fn owner_repo(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("https://github.com/")?;
    let (owner, repo) = rest.split_once('/')?;
    let name_ok = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && !s.starts_with(['.', '-'])
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    (name_ok(owner, 39) && name_ok(repo, 100) && !repo.ends_with(".git")).then_some((owner, repo))
}

/// The clones a new session's repositories need: each resource's URL, and its clone from
/// the remote under `github_url` with the token of the create request's entry (same order).
pub fn clones(github_url: &str, session: &Session, params: &[GitHubRepositoryResourceParams]) -> DomainResult<Vec<(String, RepositoryClone)>> {
    let repos = session.resources.iter().filter_map(|r| match r {
        SessionResource::GitHubRepository(g) => Some(g),
        _ => None,
    });
    repos
        .zip(params)
        .map(|(r, p)| {
            let (owner, name) = owner_repo(&r.url).ok_or_else(|| DomainError::invalid(format!("`{}` is not a GitHub repository URL", r.url)))?;
            let clone = RepositoryClone {
                remote: format!("{}/{owner}/{name}.git", github_url.trim_end_matches('/')),
                checkout: r.checkout.clone(),
                mount_path: r.mount_path.clone(),
                token: p.authorization_token.as_ref().map(|t| t.0.clone()),
            };
            Ok((r.url.clone(), clone))
        })
        .collect()
}

/// A clone that failed: the caller's error (not found, refused token, unknown branch).
pub fn cannot_clone(url: &str, clone: &RepositoryClone, why: &str) -> DomainError {
    DomainError::invalid(format!("cannot clone {url} into {}: {why}", clone.mount_path))
}

fn check_checkout(c: &Checkout, at: &str) -> DomainResult<()> {
    match c {
        Checkout::Branch { name } => {
            let ok = !name.is_empty()
                && name.len() <= 255
                && !name.starts_with(['-', '/'])
                && !name.contains("..")
                && !name.ends_with(['/', '.'])
                && name.bytes().all(|b| b.is_ascii_graphic() && !b"~^:?*[\\".contains(&b));
            if !ok {
                return Err(DomainError::invalid(format!("{at}.checkout.name `{name}` is not a valid branch name")));
            }
        }
        Checkout::Commit { sha } => {
            if !(sha.len() == 40 || sha.len() == 64) || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(DomainError::invalid(format!("{at}.checkout.sha must be a full commit SHA (40 or 64 hex digits)")));
            }
        }
    }
    Ok(())
}

/// Where the clone goes: below `/workspace` (default `/workspace/<repo>`).
pub fn mount_path(raw: Option<&str>, repo: &str, at: &str) -> DomainResult<String> {
    let path = match raw {
        None => format!("{WORKSPACE}/{repo}"),
        Some(p) if p.starts_with('/') => p.trim_end_matches('/').to_string(),
        Some(p) => format!("{WORKSPACE}/{}", p.trim_end_matches('/')),
    };
    let rel = path.strip_prefix(&format!("{WORKSPACE}/")).ok_or_else(|| {
        DomainError::invalid(format!("{at}.mount_path `{path}` must be below {WORKSPACE}/"))
    })?;
    let plain = rel.split('/').all(|s| !s.is_empty() && s != "." && s != ".." && !s.chars().any(char::is_control) && s.len() <= 255);
    if !plain || path.len() > 1024 {
        return Err(DomainError::invalid(format!("{at}.mount_path `{path}` must be a path of plain names below {WORKSPACE}/")));
    }
    Ok(path)
}

/// Checks one `github_repository` entry of a session create body (`i`: its index).
pub fn check_params(p: &GitHubRepositoryResourceParams, i: usize) -> DomainResult<()> {
    let at = format!("resources[{i}]");
    let (_, repo) = owner_repo(&p.url).ok_or_else(|| {
        DomainError::invalid(format!(
            "{at}.url `{}` must be https://github.com/<owner>/<repo> (no `.git` suffix, no SSH)",
            p.url
        ))
    })?;
    mount_path(p.mount_path.as_deref(), repo, &at)?;
    if let Some(c) = &p.checkout {
        check_checkout(c, &at)?;
    }
    if let Some(t) = &p.authorization_token
        && (t.0.is_empty() || t.0.len() > 4096 || t.0.chars().any(char::is_control))
    {
        return Err(DomainError::invalid(format!("{at}.authorization_token is not a usable token")));
    }
    Ok(())
}

/// The resources of a new session's repositories (params already checked), checking that
/// no two land in the same place.
pub fn resources(params: &[GitHubRepositoryResourceParams], ids: impl Fn() -> String, now: Timestamp) -> DomainResult<Vec<GitHubRepositoryResource>> {
    if params.len() > REPOSITORIES_PER_SESSION {
        return Err(DomainError::invalid(format!("a session may clone at most {REPOSITORIES_PER_SESSION} repositories")));
    }
    let mut out: Vec<GitHubRepositoryResource> = Vec::new();
    for (i, p) in params.iter().enumerate() {
        let (_, repo) = owner_repo(&p.url).ok_or_else(|| DomainError::invalid(format!("resources[{i}].url is not a GitHub repository URL")))?;
        let path = mount_path(p.mount_path.as_deref(), repo, &format!("resources[{i}]"))?;
        if let Some(other) = out.iter().find(|r| r.mount_path == path || path.starts_with(&format!("{}/", r.mount_path)) || r.mount_path.starts_with(&format!("{path}/"))) {
            return Err(DomainError::conflict(format!("`mount_path` `{path}` collides with the repository cloned at `{}`", other.mount_path)));
        }
        out.push(GitHubRepositoryResource {
            id: ids(),
            tag: Default::default(),
            url: p.url.clone(),
            mount_path: path,
            checkout: p.checkout.clone(),
            created_at: now,
            updated_at: now,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_github_https_urls() {
        assert_eq!(owner_repo("https://github.com/rust-lang/rust"), Some(("rust-lang", "rust")));
        for bad in [
            "https://github.com/a/b.git",
            "git@github.com:a/b",
            "http://github.com/a/b",
            "https://github.com/a",
            "https://github.com/a/b/c",
            "https://gitlab.com/a/b",
            "https://github.com/../b",
            "https://github.com/a/-b",
        ] {
            assert_eq!(owner_repo(bad), None, "{bad}");
        }
    }

    #[test]
    fn clones_go_below_the_workspace() {
        assert_eq!(mount_path(None, "app", "r").unwrap(), "/workspace/app");
        assert_eq!(mount_path(Some("src/app/"), "app", "r").unwrap(), "/workspace/src/app");
        assert_eq!(mount_path(Some("/workspace/x"), "app", "r").unwrap(), "/workspace/x");
        for bad in ["/etc", "/workspace", "/workspace/../etc", "/workspace/a//b", "/workspacex/a"] {
            assert!(mount_path(Some(bad), "app", "r").is_err(), "{bad}");
        }
    }

    #[test]
    fn checkouts_are_branch_names_or_full_shas() {
        assert!(check_checkout(&Checkout::Branch { name: "feature/x-1".into() }, "r").is_ok());
        assert!(check_checkout(&Checkout::Commit { sha: "a".repeat(40) }, "r").is_ok());
        for name in ["-x", "a..b", "a b", "x/", "--upload-pack=evil"] {
            assert!(check_checkout(&Checkout::Branch { name: name.into() }, "r").is_err(), "{name}");
        }
        assert!(check_checkout(&Checkout::Commit { sha: "abc".into() }, "r").is_err());
    }
}
