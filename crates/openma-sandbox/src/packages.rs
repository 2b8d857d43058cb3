//! Environment packages: built once per distinct package set into a cached layer on the host,
//! then bound read-only at [`MOUNT`] into every sandbox that lists them.
//!
//! A layer lives in `<layers>/<hash>/`, `hash` being that of the normalised package lists and
//! [`BUILDER_VERSION`]; environments listing the same packages share it. Its `root/` is what the
//! sandbox sees; `build.json` (state, times, error) and `build.log` (the managers' output, the
//! last [`LOG_CAP`] bytes) sit beside it, so a build's outcome survives restarts. `root/` only
//! appears, by rename, once every manager succeeded: a half-built layer is never mounted.
//!
//! No package code runs on the host: apt packages are fetched with `apt-get download` and
//! unpacked with `dpkg -x` (no maintainer scripts), pip installs wheels only
//! (`--only-binary=:all:`, so no `setup.py`), npm runs with `--ignore-scripts`. Package specs
//! reach the managers as separate arguments, never through a shell (openma-core validates
//! them: no options, paths, URLs or shell characters).
//!
//! apt dependencies: the names are resolved by apt's own resolver against the host's installed
//! packages (`apt-get install -s`, a simulation that changes nothing and needs no lock), and
//! exactly the packages it would install (named ones and their missing dependencies, at the
//! versions it chose) are downloaded. Recommends are not followed.
//!
//! At most one build of a layer runs at a time in this process; a build interrupted by a
//! restart is found `building` on disk with no build running and starts again when next needed.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;

/// Part of every layer's key: bump it when the layout or the build steps change, so that old
/// layers are not reused.
pub const BUILDER_VERSION: u32 = 1;
/// Where a layer appears inside the sandbox.
pub const MOUNT: &str = "/opt/openma/packages";
/// How much of the managers' output a build keeps (its end).
pub const LOG_CAP: usize = 64 * 1024;
/// The interpreter the sandbox's `python3` is (the host's `/usr` is bound into the sandbox);
/// pip runs under it so that wheels match it.
pub const SANDBOX_PYTHON: &str = "/usr/bin/python3";
const APT_GET: &str = "/usr/bin/apt-get";
const DPKG: &str = "/usr/bin/dpkg";
const NPM: &str = "/usr/bin/npm";
/// Output of one command kept for parsing (apt's simulation).
const CAPTURE_CAP: usize = 4 << 20;
const BUILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Settings of the operator's that the managers need to reach their registries (proxies,
/// mirrors, a TLS-inspecting proxy's CA bundle); nothing else of the server's environment.
const PASSED_ENV: &[&str] = &[
    "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_CERT", "PIP_DEFAULT_TIMEOUT", "npm_config_registry", "npm_config_cafile",
    "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
];

/// The packages of an environment that the layer builder installs, normalised (sorted, without
/// duplicates) so that equal sets share a layer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageSet {
    #[serde(default)]
    pub apt: Vec<String>,
    #[serde(default)]
    pub npm: Vec<String>,
    #[serde(default)]
    pub pip: Vec<String>,
}

impl PackageSet {
    pub fn new(apt: &[String], npm: &[String], pip: &[String]) -> Self {
        let norm = |l: &[String]| {
            let mut v: Vec<String> = l.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
            v.sort();
            v.dedup();
            v
        };
        PackageSet { apt: norm(apt), npm: norm(npm), pip: norm(pip) }
    }

    /// The set an environment's `packages` install; managers this builder does not run
    /// (cargo, gem, go: the core refuses them at create) are refused, not dropped.
    pub fn of(packages: &openma_types::environments::Packages) -> Result<Self, String> {
        for (manager, list) in [("cargo", &packages.cargo), ("gem", &packages.gem), ("go", &packages.go)] {
            if !list.is_empty() {
                return Err(format!("{manager} packages are not installed by this sandbox"));
            }
        }
        Ok(PackageSet::new(&packages.apt, &packages.npm, &packages.pip))
    }

    pub fn is_empty(&self) -> bool {
        self.apt.is_empty() && self.npm.is_empty() && self.pip.is_empty()
    }

    /// The layer's key: hex SHA-256 (first 128 bits) of the builder version and the lists.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!("openma-layer {BUILDER_VERSION}\n"));
        for (manager, list) in [("apt", &self.apt), ("npm", &self.npm), ("pip", &self.pip)] {
            h.update(manager);
            for spec in list {
                h.update([0u8]);
                h.update(spec);
            }
            h.update([b'\n']);
        }
        h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
    }

    /// Specs must be plain registry names (the core checks them; this is the last line).
    fn check(&self) -> Result<(), String> {
        for spec in self.apt.iter().chain(&self.npm).chain(&self.pip) {
            if spec.is_empty() || spec.starts_with('-') || spec.chars().any(|c| c.is_whitespace() || c.is_control() || "'\"`$;&|(){}\\".contains(c)) {
                return Err(format!("refusing package spec {spec:?}"));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerState {
    /// Never built here, or its build was interrupted.
    Pending,
    Building,
    Ready,
    Failed,
}

/// What is known of one layer's build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerStatus {
    pub state: LayerState,
    pub hash: String,
    /// Microseconds since the Unix epoch.
    pub started_at_us: Option<i64>,
    pub finished_at_us: Option<i64>,
    pub error: Option<String>,
    /// The managers' output (its last [`LOG_CAP`] bytes); not part of `build.json`.
    #[serde(skip)]
    pub log: String,
}

impl LayerStatus {
    fn pending(hash: &str) -> Self {
        LayerStatus { state: LayerState::Pending, hash: hash.to_owned(), started_at_us: None, finished_at_us: None, error: None, log: String::new() }
    }

    /// As a sandbox server reports it (`POST /v1/layers`), log included.
    pub fn report(self) -> openma_types::sandbox::LayerReport {
        use openma_types::environments::BuildState;
        openma_types::sandbox::LayerReport {
            state: match self.state {
                LayerState::Pending => BuildState::Pending,
                LayerState::Building => BuildState::Building,
                LayerState::Ready => BuildState::Ready,
                LayerState::Failed => BuildState::Failed,
            },
            hash: self.hash,
            started_at_us: self.started_at_us,
            finished_at_us: self.finished_at_us,
            error: self.error,
            log: self.log,
        }
    }

    /// The failure with the end of its log, for an error message.
    pub fn failure(&self) -> String {
        self.clone().report().failure()
    }
}

/// The cached package layers of this host. Cheap to clone.
#[derive(Clone)]
pub struct Layers {
    inner: Arc<LayersInner>,
}

struct LayersInner {
    dir: PathBuf,
    timeout: Duration,
    /// Builds running in this process, by hash; the value turns true when one ends.
    running: Mutex<HashMap<String, watch::Receiver<bool>>>,
}

/// In a layer's directory: touched each time a sandbox mounts it (its mtime is the last use).
const USED: &str = "used";

/// How long a layer no sandbox mounted is kept (unless a session of this host names it).
pub const LAYER_UNUSED_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

impl Layers {
    /// Layers below `dir` (created when the first build starts); a build taking longer than
    /// `timeout` fails.
    pub fn new(dir: impl Into<PathBuf>, timeout: Duration) -> Self {
        Layers { inner: Arc::new(LayersInner { dir: dir.into(), timeout, running: Mutex::new(HashMap::new()) }) }
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The host directory a ready layer is bound from.
    pub fn root(&self, set: &PackageSet) -> PathBuf {
        self.inner.dir.join(set.hash()).join("root")
    }

    /// The build state of a package set's layer, with its log.
    pub fn status(&self, set: &PackageSet) -> LayerStatus {
        let running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
        self.status_locked(&running, &set.hash())
    }

    /// Whether a build of this layer runs in this process now.
    pub fn is_building(&self, set: &PackageSet) -> bool {
        self.inner.running.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&set.hash())
    }

    fn status_locked(&self, running: &HashMap<String, watch::Receiver<bool>>, hash: &str) -> LayerStatus {
        let dir = self.inner.dir.join(hash);
        let mut status = std::fs::read(dir.join("build.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<LayerStatus>(&b).ok())
            .filter(|s| s.hash == hash)
            .unwrap_or_else(|| LayerStatus::pending(hash));
        if status.state == LayerState::Building && !running.contains_key(hash) {
            // a build this process did not start: it died with an earlier process
            status.state = LayerState::Pending;
        }
        if status.state == LayerState::Ready && !dir.join("root").is_dir() {
            status = LayerStatus::pending(hash);
        }
        status.log = std::fs::read(dir.join("build.log")).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        status
    }

    /// How the layer stands after what `build` asks: nothing, a start, or a start that
    /// also retries a failed build (the sandbox server's `POST /v1/layers`, and this host's).
    pub fn query(&self, set: &PackageSet, build: openma_types::sandbox::LayerBuild) -> LayerStatus {
        use openma_types::sandbox::LayerBuild;
        match build {
            LayerBuild::Status => self.status(set),
            LayerBuild::Start => self.ensure(set, false),
            LayerBuild::Retry => self.ensure(set, true),
        }
    }

    /// Starts building the layer unless it is ready, being built, or (unless `retry_failed`)
    /// failed; returns its state. Needs a tokio runtime.
    pub fn ensure(&self, set: &PackageSet, retry_failed: bool) -> LayerStatus {
        let hash = set.hash();
        let mut running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
        let status = self.status_locked(&running, &hash);
        match status.state {
            LayerState::Ready | LayerState::Building => return status,
            LayerState::Failed if !retry_failed => return status,
            LayerState::Failed | LayerState::Pending => {}
        }
        let started = LayerStatus { state: LayerState::Building, started_at_us: Some(now_us()), ..LayerStatus::pending(&hash) };
        let dir = self.inner.dir.join(&hash);
        if let Err(e) = prepare_layer_dir(&self.inner.dir, &dir).and_then(|()| write_status(&dir, &started)) {
            return LayerStatus { state: LayerState::Failed, error: Some(format!("cannot prepare {}: {e}", dir.display())), ..started };
        }
        let _ = std::fs::remove_file(dir.join("build.log"));
        let (tx, rx) = watch::channel(false);
        running.insert(hash.clone(), rx);
        drop(running);
        let (layers, set) = (self.clone(), set.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + layers.inner.timeout;
            let mut log = Log::new(dir.join("build.log"));
            let outcome = build(&layers.inner.dir, &dir, &set, deadline, &mut log).await;
            let mut done = started.clone();
            done.finished_at_us = Some(now_us());
            match outcome {
                Ok(()) => done.state = LayerState::Ready,
                Err(e) => {
                    log.line(&format!("build failed: {e}"));
                    tracing::warn!(layer = %done.hash, error = %e, "environment packages failed to build");
                    done.state = LayerState::Failed;
                    done.error = Some(e);
                }
            }
            log.flush();
            if let Err(e) = write_status(&dir, &done) {
                tracing::warn!(layer = %done.hash, error = %e, "cannot record the layer's build state");
            }
            layers.inner.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&done.hash);
            let _ = tx.send(true);
        });
        let running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
        self.status_locked(&running, &hash)
    }

    /// The host directory of the package set's ready layer, building it first if needed;
    /// waits at most `limit`. A failed build is an error naming the failure (it is not retried
    /// here: updating the environment retries it).
    pub async fn wait_ready(&self, set: &PackageSet, limit: Duration) -> Result<PathBuf, String> {
        let deadline = Instant::now() + limit;
        loop {
            let status = self.ensure(set, false);
            match status.state {
                LayerState::Ready => {
                    // what `collect` goes by; a layer that cannot be marked is merely collected sooner
                    let _ = std::fs::write(self.inner.dir.join(&status.hash).join(USED), b"");
                    return Ok(self.root(set));
                }
                LayerState::Failed => return Err(format!("the environment's packages failed to build: {}", status.failure())),
                LayerState::Pending | LayerState::Building => {}
            }
            let rx = self.inner.running.lock().unwrap_or_else(|e| e.into_inner()).get(&status.hash).cloned();
            let Some(mut rx) = rx else { continue };
            match tokio::time::timeout_at(deadline, rx.wait_for(|done| *done)).await {
                Ok(_) => {}
                Err(_) => {
                    return Err(format!(
                        "the environment's packages are still being built after {} s; try again later",
                        limit.as_secs()
                    ));
                }
            }
        }
    }
}

impl Layers {
    /// Removes the layers that no sandbox mounted for `unused_for`, unless their hash is in
    /// `keep` (the package sets the sessions of this host name) or a build of this process
    /// writes them; the number removed. A removed layer is built again when next needed. Each
    /// is renamed away under the builds' lock (so none starts meanwhile), then deleted.
    pub fn collect(&self, keep: &std::collections::HashSet<String>, unused_for: Duration) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.inner.dir) else { return 0 };
        let now = SystemTime::now();
        let mut doomed = Vec::new();
        {
            let running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || !e.file_type().is_ok_and(|t| t.is_dir()) || keep.contains(&name) || running.contains_key(&name) {
                    continue;
                }
                let dir = e.path();
                let last = [USED, "build.json"].iter().find_map(|f| std::fs::metadata(dir.join(f)).and_then(|m| m.modified()).ok());
                let last = last.or_else(|| e.metadata().and_then(|m| m.modified()).ok());
                if last.is_some_and(|t| now.duration_since(t).unwrap_or_default() < unused_for) {
                    continue;
                }
                let away = self.inner.dir.join(format!(".gc-{name}-{}", ulid::Ulid::new()));
                match std::fs::rename(&dir, &away) {
                    Ok(()) => doomed.push((name, away)),
                    Err(e) => tracing::warn!(layer = %name, error = %e, "cannot collect an unused package layer"),
                }
            }
        }
        for (name, away) in &doomed {
            match std::fs::remove_dir_all(away) {
                Ok(()) => tracing::info!(layer = %name, "collected a package layer no sandbox used for {} days", unused_for.as_secs() / 86_400),
                Err(e) => tracing::warn!(layer = %name, error = %e, "cannot delete a collected package layer"),
            }
        }
        doomed.len()
    }
}

fn prepare_layer_dir(layers: &Path, dir: &Path) -> io::Result<()> {
    // sandboxes (other uids) pass through to `<hash>/root`, and may list nothing on the way
    for d in [layers, dir] {
        std::fs::create_dir_all(d)?;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711))?;
    }
    Ok(())
}

fn write_status(dir: &Path, status: &LayerStatus) -> io::Result<()> {
    let tmp = dir.join(format!(".build.json.{}", ulid::Ulid::new()));
    std::fs::write(&tmp, serde_json::to_vec(status).map_err(io::Error::other)?)?;
    std::fs::rename(&tmp, dir.join("build.json"))
}

/// A build's log: the end of everything the managers printed, kept in memory and written to
/// `build.log` after each step.
struct Log {
    path: PathBuf,
    buf: Vec<u8>,
}

impl Log {
    fn new(path: PathBuf) -> Self {
        Log { path, buf: Vec::new() }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > LOG_CAP {
            let cut = self.buf.len() - LOG_CAP;
            self.buf.drain(..cut);
        }
    }

    fn line(&mut self, text: &str) {
        if !self.buf.is_empty() && !self.buf.ends_with(b"\n") {
            self.push(b"\n");
        }
        self.push(text.as_bytes());
        self.push(b"\n");
    }

    fn flush(&self) {
        let _ = std::fs::write(&self.path, &self.buf);
    }
}

/// Builds the layer into `<dir>/root.tmp`, then renames it to `<dir>/root`.
async fn build(layers: &Path, dir: &Path, set: &PackageSet, deadline: Instant, log: &mut Log) -> Result<(), String> {
    set.check()?;
    let staging = dir.join("root.tmp");
    let root = dir.join("root");
    for old in [&staging, &root, &dir.join("debs")] {
        remove_tree(old).map_err(|e| format!("cannot remove {}: {e}", old.display()))?;
    }
    let home = layers.join(".home");
    for d in [&staging, &home] {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).map_err(|e| e.to_string())?;
    let env = build_env(&home);
    log.line(&format!("openma layer builder {BUILDER_VERSION}: apt {:?}, npm {:?}, pip {:?}", set.apt, set.npm, set.pip));
    if !set.apt.is_empty() {
        let mut args: Vec<String> = ["install", "-s", "-q", "--no-install-recommends"].map(String::from).to_vec();
        args.extend(set.apt.iter().cloned());
        let plan = run(log, "apt-get install --simulate", APT_GET, &args, dir, &env, deadline).await?;
        let wanted = apt_plan(&plan);
        if wanted.is_empty() {
            log.line("apt: every package is installed on the host already");
        } else {
            let debs = dir.join("debs");
            std::fs::create_dir_all(&debs).map_err(|e| e.to_string())?;
            let mut args = vec!["download".to_owned(), "-q".to_owned()];
            args.extend(wanted);
            run(log, "apt-get download", APT_GET, &args, &debs, &env, deadline).await?;
            let mut files: Vec<PathBuf> = std::fs::read_dir(&debs)
                .map_err(|e| e.to_string())?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "deb"))
                .collect();
            files.sort();
            for deb in files {
                let args = vec!["-x".to_owned(), path_str(&deb), path_str(&staging)];
                run(log, "dpkg -x", DPKG, &args, &debs, &env, deadline).await?;
            }
            remove_tree(&debs).map_err(|e| e.to_string())?;
        }
    }
    if !set.npm.is_empty() {
        let prefix = staging.join("node");
        std::fs::create_dir_all(&prefix).map_err(|e| e.to_string())?;
        let mut args: Vec<String> = ["install", "--prefix"].map(String::from).to_vec();
        args.push(path_str(&prefix));
        args.extend(["--ignore-scripts", "--no-audit", "--no-fund", "--no-update-notifier", "--omit=dev"].map(String::from));
        args.extend(set.npm.iter().cloned());
        run(log, "npm install", NPM, &args, &prefix, &env, deadline).await?;
    }
    if !set.pip.is_empty() {
        let target = staging.join("python");
        let mut args: Vec<String> = ["-m", "pip", "install", "--target"].map(String::from).to_vec();
        args.push(path_str(&target));
        args.extend(["--only-binary=:all:", "--no-input", "--disable-pip-version-check", "--no-warn-script-location", "--progress-bar=off"].map(String::from));
        args.extend(set.pip.iter().cloned());
        run(log, "pip install", SANDBOX_PYTHON, &args, &staging, &env, deadline).await?;
    }
    let opened = staging.clone();
    tokio::task::spawn_blocking(move || open_up(&opened))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot make the layer readable: {e}"))?;
    std::fs::rename(&staging, &root).map_err(|e| format!("cannot move the layer into place: {e}"))?;
    log.line("layer ready");
    log.flush();
    Ok(())
}

/// `name=version` of every package apt's simulation would install (`Inst name [old] (version …)`).
fn apt_plan(simulation: &str) -> Vec<String> {
    simulation
        .lines()
        .filter_map(|l| l.strip_prefix("Inst "))
        .filter_map(|rest| {
            let name = rest.split_whitespace().next()?;
            let version = rest.split_once('(')?.1.split_whitespace().next()?;
            Some(format!("{name}={version}"))
        })
        .collect()
}

fn build_env(home: &Path) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), BUILD_PATH.into()),
        ("HOME".into(), path_str(home)),
        ("LANG".into(), "C.UTF-8".into()),
        ("LC_ALL".into(), "C.UTF-8".into()),
        ("DEBIAN_FRONTEND".into(), "noninteractive".into()),
        ("PIP_ROOT_USER_ACTION".into(), "ignore".into()),
        ("npm_config_update_notifier".into(), "false".into()),
    ];
    for name in PASSED_ENV {
        if let Ok(v) = std::env::var(name) {
            env.push(((*name).into(), v));
        }
    }
    env
}

/// Runs one manager command (stdout and stderr merged into the log) until it ends or the
/// build's deadline passes; its whole process group is killed either way. Returns its output.
async fn run(log: &mut Log, what: &str, program: &str, args: &[String], cwd: &Path, env: &[(String, String)], deadline: Instant) -> Result<String, String> {
    log.line(&format!("$ {program} {}", args.join(" ")));
    log.flush();
    let (mut reader, writer) = std::io::pipe().map_err(|e| format!("cannot create a pipe: {e}"))?;
    let writer2 = writer.try_clone().map_err(|e| format!("cannot create a pipe: {e}"))?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .process_group(0)
        .kill_on_drop(true);
    let spawned = cmd.spawn();
    // our copies of the write end must go, or the reader never sees EOF
    drop(cmd);
    let mut child = spawned.map_err(|e| format!("cannot run {program} for `{what}`: {e}"))?;
    let pgid = child.id().and_then(|p| rustix::process::Pid::from_raw(p as i32));
    let reading = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) if out.len() < CAPTURE_CAP => out.extend_from_slice(&buf[..n]),
                Ok(_) => {}
            }
        }
        out
    });
    let waited = tokio::time::timeout_at(deadline, child.wait()).await;
    // leftovers (a timed-out manager, a daemon it started) would keep the pipe open
    if let Some(pgid) = pgid {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    }
    if waited.is_err() {
        let _ = child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    }
    let out = tokio::time::timeout(Duration::from_secs(10), reading).await.ok().and_then(Result::ok).unwrap_or_default();
    log.push(&out);
    log.flush();
    match waited {
        Err(_) => Err(format!("the build ran out of time during `{what}`")),
        Ok(Err(e)) => Err(format!("`{what}` failed: {e}")),
        Ok(Ok(status)) if status.success() => Ok(String::from_utf8_lossy(&out).into_owned()),
        Ok(Ok(status)) => {
            let code = status.code().map(|c| format!("exit code {c}")).unwrap_or_else(|| "a signal".into());
            Err(format!("`{what}` ended with {code}"))
        }
    }
}

/// Makes everything in the layer readable (and directories and executables enterable) by the
/// sandboxes' uids; links are left alone, never followed.
fn open_up(dir: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    let mode = meta.permissions().mode();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode((mode | 0o755) & 0o7755 & !0o6000))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            continue;
        }
        if meta.is_dir() {
            open_up(&path)?;
        } else {
            let mode = meta.permissions().mode();
            let x = if mode & 0o100 != 0 { 0o111 } else { 0 };
            // never setuid/setgid: the layer is data for unprivileged sandboxes
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode((mode | 0o444 | x) & 0o1777 & !0o6000))?;
        }
    }
    Ok(())
}

fn remove_tree(p: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// What the shell of a sandbox with a layer needs in its environment to find the packages.
pub(crate) fn layer_env() -> Vec<(&'static str, String)> {
    let m = MOUNT;
    vec![
        (
            "PATH",
            format!("{m}/usr/local/bin:{m}/usr/bin:{m}/bin:{m}/usr/sbin:{m}/node/node_modules/.bin:{m}/python/bin:{}", crate::bwrap::SANDBOX_PATH),
        ),
        ("PYTHONPATH", format!("{m}/python:{m}/usr/lib/python3/dist-packages")),
        ("NODE_PATH", format!("{m}/node/node_modules")),
        ("LD_LIBRARY_PATH", format!("{m}/usr/lib/x86_64-linux-gnu:{m}/lib/x86_64-linux-gnu:{m}/usr/lib:{m}/lib")),
        ("OPENMA_PACKAGES", m.to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_layers_are_collected_unless_a_session_names_them_or_a_build_runs() {
        let dir = std::env::temp_dir().join(format!("openma-layers-{}", ulid::Ulid::new()));
        let layers = Layers::new(&dir, Duration::from_secs(60));
        let old = SystemTime::now() - Duration::from_secs(8 * 24 * 3600);
        let layer = |hash: &str, used: SystemTime| {
            let d = dir.join(hash);
            std::fs::create_dir_all(d.join("root/usr")).unwrap();
            write_status(&d, &LayerStatus { state: LayerState::Ready, ..LayerStatus::pending(hash) }).unwrap();
            std::fs::File::create(d.join(USED)).unwrap().set_modified(used).unwrap();
            std::fs::File::options().write(true).open(d.join("build.json")).unwrap().set_modified(used).unwrap();
        };
        layer("stale", old);
        layer("named", old);
        layer("fresh", SystemTime::now());
        layer("building", old);
        std::fs::create_dir_all(dir.join(".home")).unwrap();
        let (_tx, rx) = watch::channel(false);
        layers.inner.running.lock().unwrap().insert("building".into(), rx);
        let keep = std::collections::HashSet::from(["named".to_owned()]);
        assert_eq!(layers.collect(&keep, LAYER_UNUSED_FOR), 1);
        let mut left: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, [".home", "building", "fresh", "named"], "only the stale, unnamed, idle layer went");
        assert_eq!(layers.collect(&keep, LAYER_UNUSED_FOR), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn equal_sets_share_a_key_and_different_ones_do_not() {
        let a = PackageSet::new(&["hello".into()], &[], &["six".into(), "attrs".into(), "six".into()]);
        let b = PackageSet::new(&["hello".into()], &[], &["attrs".into(), "six".into()]);
        assert_eq!(a, b);
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.hash().len(), 32);
        // the same name under another manager is another layer
        let c = PackageSet::new(&[], &["hello".into()], &["attrs".into(), "six".into()]);
        assert_ne!(a.hash(), c.hash());
    }

    #[test]
    fn apt_plan_takes_exactly_what_the_resolver_would_install() {
        let sim = "NOTE: This is only a simulation!\nInst libtext-charwidth-perl (0.04-11 Debian:12.15/oldstable [amd64])\n\
                   Inst cowsay (3.03+dfsg2-8 Debian:12.15/oldstable [all])\nInst libfoo [1.0-1] (1.0-2 Debian:12.15/oldstable [amd64])\n\
                   Conf cowsay (3.03+dfsg2-8 Debian:12.15/oldstable [all])\n";
        assert_eq!(apt_plan(sim), vec!["libtext-charwidth-perl=0.04-11", "cowsay=3.03+dfsg2-8", "libfoo=1.0-2"]);
    }

    #[test]
    fn log_keeps_its_end_and_failures_quote_it() {
        let dir = std::env::temp_dir().join(format!("openma-log-{}", ulid::Ulid::new()));
        let mut log = Log::new(dir.join("x"));
        for i in 0..20_000 {
            log.line(&format!("line {i}"));
        }
        assert!(log.buf.len() <= LOG_CAP);
        assert!(String::from_utf8_lossy(&log.buf).ends_with("line 19999\n"));
        let s = LayerStatus { error: Some("`pip install` ended with exit code 1".into()), log: "a\nb\nERROR: No matching distribution\n".into(), ..LayerStatus::pending("h") };
        assert!(s.failure().contains("exit code 1") && s.failure().ends_with("ERROR: No matching distribution"));
    }
}
