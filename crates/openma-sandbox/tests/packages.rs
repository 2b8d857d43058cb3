//! Environment packages against the real registries this machine reaches (Debian, npm, PyPI)
//! and real bubblewrap: a layer is built once, mounted read-only with the search paths set,
//! survives a restart; a failed build is a clear tool error; environment limits reach the shell.

mod common;

use std::time::Duration;

use common::{TestEnv, text};
use openma_sandbox::{LayerState, EnvironmentLimits, PackageSet, SessionEnvironment};
use serde_json::json;

/// Small packages the host does not have: GNU hello (apt), is-number (npm), six (pip).
fn small_set() -> PackageSet {
    PackageSet::new(&["hello".into()], &["is-number@7".into()], &["six".into()])
}

fn host_has_hello() -> bool {
    std::process::Command::new("dpkg").args(["-s", "hello"]).output().is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_is_built_once_and_mounted_read_only_with_its_paths_set() {
    assert!(!host_has_hello(), "the test needs a host without the `hello` package");
    let env = TestEnv::new();
    let set = small_set();
    let layers = env.sandboxes.layers();
    assert_eq!(layers.status(&set).state, LayerState::Pending);
    let root = tokio::time::timeout(Duration::from_secs(300), layers.wait_ready(&set, Duration::from_secs(280)))
        .await
        .expect("the build ends within 300 s")
        .expect("the layer builds");
    let built = layers.status(&set);
    assert_eq!(built.state, LayerState::Ready, "{built:?}");
    assert!(built.log.contains("dpkg -x") && built.log.contains("layer ready"), "{}", built.log);
    let took = built.finished_at_us.unwrap() - built.started_at_us.unwrap();
    eprintln!("layer build (apt hello, npm is-number@7, pip six, cold caches or not): {:.1} s", took as f64 / 1e6);
    assert!(root.join("usr/bin/hello").is_file() && root.join("python/six.py").is_file() && root.join("node/node_modules/is-number").is_dir());

    // an equal set (another order, a duplicate) is the same layer: ready, not rebuilt
    let again = PackageSet::new(&["hello".into()], &["is-number@7".into()], &["six".into(), "six".into()]);
    let status = layers.ensure(&again, false);
    assert_eq!((status.state, status.started_at_us), (LayerState::Ready, built.started_at_us));

    let recorded = SessionEnvironment { packages: set.clone(), limits: EnvironmentLimits { open_files: Some(321), ..Default::default() }, mcp_servers: Vec::new() };
    env.sandboxes.set_environment("sesn_pkgs", &recorded).unwrap();
    let out = env
        .bash(
            "sesn_pkgs",
            "hello; python3 -c 'import six; print(\"six\", six.__version__)'; node -e 'console.log(\"is-number\", require(\"is-number\")(42))'; \
             ulimit -n; touch /opt/openma/packages/planted 2>&1 || echo read-only",
        )
        .await;
    assert!(out.contains("Hello, world!"), "the apt binary runs: {out}");
    assert!(out.contains("six 1."), "the pip package imports: {out}");
    assert!(out.contains("is-number true"), "the npm package is required: {out}");
    assert!(out.contains("321"), "the environment's open_files limit applies: {out}");
    assert!(out.contains("read-only"), "the layer is read-only: {out}");
    assert!(!root.join("planted").exists());

    // a restarted server finds the layer on disk and mounts it again, without a build
    let restarted = env.restarted();
    assert_eq!(restarted.sandboxes.layers().status(&set).state, LayerState::Ready);
    let out = restarted.bash("sesn_pkgs", "hello --greeting=again").await;
    assert!(out.contains("again"), "{out}");
    assert_eq!(restarted.sandboxes.layers().status(&set).started_at_us, built.started_at_us);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_build_is_a_tool_error_naming_it_not_a_hang() {
    let env = TestEnv::new();
    let set = PackageSet::new(&[], &[], &["openma-no-such-package-zq9".into()]);
    env.sandboxes
        .set_environment("sesn_broken", &SessionEnvironment { packages: set.clone(), ..Default::default() })
        .unwrap();
    let out = env.call("sesn_broken", "bash", json!({"command": "echo never"})).await;
    let said = text(&out);
    assert!(out.is_error, "{said}");
    assert!(said.contains("failed to build") && said.contains("openma-no-such-package-zq9"), "{said}");
    let status = env.sandboxes.layers().status(&set);
    assert_eq!(status.state, LayerState::Failed);
    assert!(status.log.contains("pip install") && status.finished_at_us.is_some(), "{}", status.log);
    // a failure is remembered: the next call answers at once, without building again
    let started = std::time::Instant::now();
    let out = env.call("sesn_broken", "bash", json!({"command": "echo never"})).await;
    assert!(out.is_error && started.elapsed() < Duration::from_secs(5));
    // file tools do not need the packages
    let out = env.call("sesn_broken", "write", json!({"file_path": "/workspace/a.txt", "content": "x"})).await;
    assert!(!out.is_error, "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_limits_reach_the_shell_and_bound_timeouts() {
    let env = TestEnv::new();
    let limits = EnvironmentLimits { open_files: Some(123), processes: Some(77), bash_timeout_max_s: Some(1), ..Default::default() };
    env.sandboxes.set_environment("sesn_lim", &SessionEnvironment { limits, ..Default::default() }).unwrap();
    let out = env.bash("sesn_lim", "ulimit -n; ulimit -u").await;
    assert!(out.contains("123") && out.contains("77"), "{out}");
    let started = std::time::Instant::now();
    let out = env.call("sesn_lim", "bash", json!({"command": "sleep 20", "timeout_ms": 15000})).await;
    assert!(out.is_error && text(&out).contains("timed out after 1 s"), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(10));
    // another session keeps the server's limits
    let out = env.bash("sesn_other", "ulimit -n").await;
    assert!(out.contains(&common::limits().open_files.to_string()), "{out}");
}
