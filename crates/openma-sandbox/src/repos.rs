//! Cloning a `github_repository` resource into a session's workspace. `git` runs outside the
//! sandbox (which has no network of its own) with the token handed to it as an HTTP header
//! through the environment: never on a command line, in the remote URL, in `.git/config`,
//! in the sandbox, a log line or the event log. The native server clones this way, and so
//! does the sandbox server for a Workers `SessionDO`.

use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use openma_types::sandbox::RepositoryClone;
use openma_types::sessions::Checkout;

use crate::Sandboxes;

const CLONE_TIMEOUT: Duration = Duration::from_secs(300);
const GIT: &str = "git";

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

impl Sandboxes {
    /// Clones a repository into the session's workspace at its mount path (staged beside the
    /// workspace, then moved in, owned by the session's user). Why not, for the caller.
    pub async fn clone_repository(&self, session_id: &str, clone: &RepositoryClone) -> Result<(), String> {
        let staged = self.staging_dir(session_id).map_err(|e| e.to_string())?;
        let dest = staged.join("repo");
        let dest_s = dest.to_string_lossy().into_owned();
        let token = clone.token.as_deref();
        let result = async {
            let mut args = vec!["clone", "--quiet", "--no-recurse-submodules"];
            if let Some(Checkout::Branch { name: branch }) = &clone.checkout {
                args.extend(["--branch", branch.as_str()]);
            }
            args.extend(["--", clone.remote.as_str(), dest_s.as_str()]);
            git(&args, token, None).await?;
            if let Some(Checkout::Commit { sha }) = &clone.checkout {
                git(&["checkout", "--quiet", "--detach", sha.as_str(), "--"], None, Some(&dest)).await?;
            }
            Ok::<(), String>(())
        }
        .await;
        let moved = result.and_then(|()| self.move_into_workspace(session_id, &dest, &clone.mount_path).map_err(|e| e.to_string()));
        let _ = std::fs::remove_dir_all(&staged);
        moved
    }
}
