//! The bubblewrap command line of a session sandbox: namespaces, the filesystem it sees,
//! its uid and rlimits.
//!
//! The sandbox sees read-only `/usr` (and the `/bin`, `/lib*`, `/sbin` links or binds of the
//! host), a generated `/etc` holding only harmless files, a private `/tmp`, its own `/proc`
//! and `/dev`, and `/workspace`. Nothing else of the host: not the data dir, not other
//! sessions, not `/root` or `/home`. Its root is remounted read-only.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::{Limits, SandboxConfig};
use crate::network::{self, SandboxNet};

pub(crate) const BWRAP: &str = "/usr/bin/bwrap";
pub(crate) const SETPRIV: &str = "/usr/bin/setpriv";
pub(crate) const PRLIMIT: &str = "/usr/bin/prlimit";
pub(crate) const NICE: &str = "/usr/bin/nice";
pub(crate) const SANDBOX_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Host `/etc` entries that carry no secrets and that ordinary tools need (dynamic linker
/// cache, Debian alternatives symlinks, CA certificates, time zone, …). Everything else in
/// the sandbox's `/etc` is generated.
const HOST_ETC_ALLOWED: &[&str] = &[
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "localtime",
    "timezone",
    "ssl/certs",
    "ssl/openssl.cnf",
    "ca-certificates",
    "ca-certificates.conf",
    "mime.types",
    "protocols",
    "services",
    "os-release",
    "debian_version",
    "inputrc",
];

/// The session's uid, stable across restarts.
pub(crate) fn session_uid(config: &SandboxConfig, session_id: &str) -> u32 {
    // FNV-1a: stable across Rust versions, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in session_id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    config.uid_base + (h % u64::from(config.uid_count.max(1))) as u32
}

/// Session ids become directory names: only plain ids are accepted.
pub(crate) fn valid_session_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !id.starts_with('-')
}

/// Host paths of one session.
#[derive(Clone, Debug)]
pub(crate) struct SessionPaths {
    pub dir: PathBuf,
    pub workspace: PathBuf,
    pub etc: PathBuf,
    /// Files mounted from the Files API: root-owned, bound read-only at `/mnt/session/uploads`.
    pub uploads: PathBuf,
    /// The session's deliverables, bound read-write at `/mnt/session/outputs`.
    pub outputs: PathBuf,
    /// Mounted memory stores, one directory each, bound at `/mnt/memory/<slug>`.
    pub memory: PathBuf,
    /// The agent's skills, root-owned, bound read-only at `/mnt/skills`.
    pub skills: PathBuf,
    /// The session's egress proxy socket (root-owned directory), bound read-only at
    /// `/run/openma/egress` when the session has networking.
    pub egress: PathBuf,
    /// The session's [`crate::EgressPolicy`] (host-only, root-owned).
    pub egress_policy: PathBuf,
}

impl SessionPaths {
    pub fn new(root: &Path, session_id: &str) -> Self {
        let dir = root.join(session_id);
        SessionPaths {
            workspace: dir.join("workspace"),
            etc: dir.join("etc"),
            uploads: dir.join("uploads"),
            outputs: dir.join("outputs"),
            memory: dir.join("memory"),
            skills: dir.join("skills"),
            egress: dir.join("egress"),
            egress_policy: dir.join("egress.json"),
            dir,
        }
    }
}

/// Creates the root, the session dir and its workspace with the permissions bwrap needs:
/// the session uid must be able to traverse `root` and `root/<id>` (mode 0711: no listing)
/// and owns its workspace.
pub(crate) fn prepare_dirs(root: &Path, paths: &SessionPaths, uid: Option<u32>) -> io::Result<()> {
    prepare_root(root)?;
    match fs::create_dir(&paths.dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    fs::set_permissions(&paths.dir, fs::Permissions::from_mode(0o711))?;
    match fs::create_dir(&paths.workspace) {
        Ok(()) => fs::set_permissions(&paths.workspace, fs::Permissions::from_mode(0o755))?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    for (dir, owned) in [(&paths.uploads, false), (&paths.outputs, true), (&paths.skills, false)] {
        match fs::create_dir(dir) {
            Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if owned && let Some(uid) = uid {
            chown(dir, Some(uid), Some(uid))?;
        }
    }
    if let Some(uid) = uid {
        chown(&paths.workspace, Some(uid), Some(uid))?;
    }
    Ok(())
}

/// The sandbox root: traversable by the session uids, not listable.
pub(crate) fn prepare_root(root: &Path) -> io::Result<()> {
    fs::create_dir_all(root)?;
    fs::set_permissions(root, fs::Permissions::from_mode(0o711))
}

/// Writes the generated `/etc` files (root-owned, read-only inside the sandbox).
pub(crate) fn write_etc(paths: &SessionPaths, uid: u32) -> io::Result<()> {
    fs::create_dir_all(&paths.etc)?;
    fs::set_permissions(&paths.etc, fs::Permissions::from_mode(0o755))?;
    let files: [(&str, String); 6] = [
        (
            "passwd",
            format!(
                "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nuser:x:{uid}:{uid}:sandbox user:/workspace:/bin/bash\n"
            ),
        ),
        ("group", format!("root:x:0:\nnogroup:x:65534:\nuser:x:{uid}:\n")),
        ("hosts", "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n".into()),
        // No route to any resolver: a resolver that answers nothing rather than the host's
        // (with networking, clients name hosts to the egress proxy, which resolves them).
        ("resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n".into()),
        ("nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n".into()),
        ("hostname", "sandbox\n".into()),
    ];
    for (name, content) in files {
        let path = paths.etc.join(name);
        if fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
            fs::write(&path, content)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(())
}

const GENERATED_ETC: &[&str] = &[
    "passwd",
    "group",
    "hosts",
    "resolv.conf",
    "nsswitch.conf",
    "hostname",
];

/// `path` of the host as the sandbox should see it: a symlink is recreated as a symlink
/// (Debian's merged `/usr` makes `/bin`, `/lib`, … links), a directory is bound read-only.
fn system_dir(args: &mut Vec<String>, path: &str) {
    let p = Path::new(path);
    match fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_symlink() => {
            if let Ok(target) = fs::read_link(p) {
                args.extend([
                    "--symlink".into(),
                    target.to_string_lossy().into_owned(),
                    path.into(),
                ]);
            }
        }
        Ok(m) if m.is_dir() => args.extend(["--ro-bind".into(), path.into(), path.into()]),
        _ => {}
    }
}

/// The full command: `setpriv` (session uid) → `nice` → `bwrap` → `prlimit` → (with
/// networking: the bridge, which starts its relay and then execs) → `bash`, each exec'ing the
/// next (the spawned pid is bwrap's). `layer`, the host directory of the environment's
/// package layer, is bound read-only at [`crate::packages::MOUNT`].
pub(crate) fn shell_command(
    paths: &SessionPaths,
    uid: Option<u32>,
    limits: &Limits,
    net: Option<&SandboxNet>,
    layer: Option<&Path>,
) -> tokio::process::Command {
    let mut args: Vec<String> = Vec::new();
    let nice = limits.nice.min(19).to_string();
    let mut cmd = match uid {
        Some(uid) => {
            let mut c = tokio::process::Command::new(SETPRIV);
            c.args([
                format!("--reuid={uid}"),
                format!("--regid={uid}"),
                "--clear-groups".into(),
                "--no-new-privs".into(),
                "--".into(),
            ]);
            c
        }
        None => tokio::process::Command::new(NICE),
    };
    if uid.is_some() {
        args.push(NICE.into());
    }
    args.extend(["-n".into(), nice, BWRAP.into()]);
    args.extend(
        [
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "sandbox",
        ]
        .map(String::from),
    );
    args.extend(["--ro-bind".into(), "/usr".into(), "/usr".into()]);
    for dir in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
        system_dir(&mut args, dir);
    }
    args.extend(["--proc", "/proc", "--dev", "/dev"].map(String::from));
    let tmp = limits.tmp_bytes.to_string();
    args.extend([
        "--size".into(),
        tmp.clone(),
        "--tmpfs".into(),
        "/tmp".into(),
    ]);
    args.extend(["--size".into(), tmp, "--tmpfs".into(), "/dev/shm".into()]);
    args.extend(["--dir".into(), "/etc".into()]);
    for name in GENERATED_ETC {
        args.extend([
            "--ro-bind".into(),
            path_str(&paths.etc.join(name)),
            format!("/etc/{name}"),
        ]);
    }
    if let Some(bundle) = net.and_then(|n| n.ca_bundle.as_ref()) {
        args.extend(["--ro-bind".into(), path_str(bundle), network::CA_BUNDLE.into()]);
    }
    for name in HOST_ETC_ALLOWED {
        args.extend([
            "--ro-bind-try".into(),
            format!("/etc/{name}"),
            format!("/etc/{name}"),
        ]);
    }
    args.extend([
        "--bind".into(),
        path_str(&paths.workspace),
        "/workspace".into(),
        "--ro-bind".into(),
        path_str(&paths.uploads),
        crate::paths::UPLOADS.into(),
        "--bind".into(),
        path_str(&paths.outputs),
        crate::paths::OUTPUTS.into(),
        "--ro-bind".into(),
        path_str(&paths.skills),
        crate::paths::SKILLS.into(),
    ]);
    // `/mnt/memory` itself stays read-only: writes outside a store's directory fail
    for m in crate::mounts::memory_mounts(paths) {
        args.extend([
            if m.writable { "--bind" } else { "--ro-bind" }.into(),
            path_str(&paths.memory.join(&m.slug)),
            format!("/mnt/memory/{}", m.slug),
        ]);
    }
    if let Some(net) = net {
        args.extend([
            "--ro-bind".into(),
            path_str(&net.bridge),
            network::BRIDGE_PATH.into(),
            "--ro-bind".into(),
            path_str(&net.socket_dir),
            network::SOCKET_DIR.into(),
        ]);
    }
    if let Some(layer) = layer {
        args.extend(["--ro-bind".into(), path_str(layer), crate::packages::MOUNT.into()]);
    }
    args.extend(["--remount-ro", "/", "--chdir", "/workspace", "--"].map(String::from));
    args.push(PRLIMIT.into());
    args.extend(prlimit_args(limits));
    args.push("--".into());
    if net.is_some() {
        args.extend([
            network::BRIDGE_PATH.into(),
            "sandbox-bridge".into(),
            "--listen".into(),
            network::BRIDGE_LISTEN.into(),
            "--unix".into(),
            network::socket_in_sandbox(),
            "--".into(),
        ]);
    }
    args.extend([
        // Found on PATH so that bash calls itself `bash` in its messages.
        "bash".into(),
        "--noprofile".into(),
        "--norc".into(),
    ]);
    cmd.args(args);
    cmd.env_clear();
    cmd.envs(sandbox_env(paths, net, layer.is_some()));
    cmd.current_dir("/");
    cmd
}

/// The environment of the sandbox's processes: fixed paths and user, the proxy and CA
/// settings when it has networking, the package layer's paths, then the session's own
/// variables (e.g. credential placeholders), which never replace the ones before them.
pub(crate) fn sandbox_env(paths: &SessionPaths, net: Option<&SandboxNet>, layer: bool) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("PATH", SANDBOX_PATH),
        ("HOME", "/workspace"),
        ("USER", "user"),
        ("LOGNAME", "user"),
        ("SHELL", "/bin/bash"),
        ("LANG", "C.UTF-8"),
        ("TERM", "dumb"),
        ("TMPDIR", "/tmp"),
        ("PAGER", "cat"),
        ("GIT_PAGER", "cat"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut set = |k: &str, v: String| match env.iter_mut().find(|(name, _)| name == k) {
        Some(slot) => slot.1 = v,
        None => env.push((k.to_owned(), v)),
    };
    if let Some(net) = net {
        for (k, v) in network::proxy_env() {
            set(k, v.to_owned());
        }
        if net.ca_bundle.is_some() {
            for (k, v) in network::ca_env() {
                set(k, v.to_owned());
            }
        }
    }
    if layer {
        for (k, v) in crate::packages::layer_env() {
            set(k, v);
        }
    }
    for (name, value) in session_env(paths) {
        if !matches!(name.as_str(), "PATH" | "HOME" | "USER" | "LOGNAME" | "SHELL" | "TMPDIR") && !name.contains("PROXY") && !name.contains("proxy") {
            set(&name, value);
        }
    }
    env
}

/// `prlimit`'s options for the sandbox's rlimits.
pub(crate) fn prlimit_args(limits: &Limits) -> [String; 6] {
    [
        format!("--as={}", limits.memory_bytes),
        format!("--data={}", limits.memory_bytes),
        format!("--nproc={}", limits.processes),
        format!("--nofile={}", limits.open_files),
        format!("--fsize={}", limits.file_size_bytes),
        "--core=0".into(),
    ]
}

/// Variables recorded for a session with [`crate::Sandboxes::set_session_env`].
pub(crate) fn session_env(paths: &SessionPaths) -> Vec<(String, String)> {
    std::fs::read(paths.dir.join("env.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Whether this process can switch to a session uid (it must be root).
pub(crate) fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Verifies the host can run sandboxes; Ok carries bubblewrap's version.
pub(crate) fn check() -> Result<String, String> {
    const INSTALL: &str = "install it with `apt-get install bubblewrap`";
    let out = Command::new(BWRAP)
        .arg("--version")
        .output()
        .map_err(|e| format!("bubblewrap ({BWRAP}) cannot be run ({e}); {INSTALL}"))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || version.is_empty() {
        return Err(format!("`bwrap --version` failed; {INSTALL}"));
    }
    for tool in [SETPRIV, PRLIMIT, NICE, crate::stdio::NSENTER] {
        if !Path::new(tool).exists() {
            return Err(format!(
                "{tool} is missing; install it with `apt-get install util-linux`"
            ));
        }
    }
    // A real sandbox with every namespace, so a host that forbids user namespaces is caught
    // here rather than at the first tool call.
    let mut trial = Command::new(BWRAP);
    trial.args([
        "--unshare-all",
        "--unshare-user",
        "--die-with-parent",
        "--ro-bind",
        "/usr",
        "/usr",
    ]);
    let mut args = Vec::new();
    for dir in ["/bin", "/lib", "/lib64"] {
        system_dir(&mut args, dir);
    }
    trial
        .args(args)
        .args(["--proc", "/proc", "--dev", "/dev", "--", "/bin/true"]);
    let out = trial
        .output()
        .map_err(|e| format!("bubblewrap cannot be run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "bubblewrap cannot create a sandbox here (are unprivileged user namespaces disabled?): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if running_as_root() {
        Ok(version)
    } else {
        Ok(format!(
            "{version} (not root: sessions run as the server's own uid)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_is_stable_and_in_range() {
        let c = SandboxConfig::new("/nonexistent");
        let a = session_uid(&c, "sesn_01ABC");
        assert_eq!(a, session_uid(&c, "sesn_01ABC"));
        assert!((200_000..300_000).contains(&a));
        assert_ne!(a, session_uid(&c, "sesn_01ABD"));
    }

    #[test]
    fn session_ids_that_could_name_other_paths_are_refused() {
        assert!(valid_session_id("sesn_01HZX-abc"));
        for bad in ["", "..", "a/b", "../x", "-rf", "a b", ".hidden"] {
            assert!(!valid_session_id(bad), "{bad}");
        }
    }
}
