//! The bash tool against real bubblewrap: a persistent shell, exit codes, timeouts that
//! kill the command but not the shell, capped output, limits and restarts.

mod common;

use std::time::{Duration, Instant};

use common::{TestEnv, bounded, text};
use openma_sandbox::{SandboxConfig, Sandboxes};
use serde_json::json;

/// Processes (not threads) on the host running as `uid`.
fn uid_processes(uid: u32) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("status"))
                .map(|st| {
                    st.lines().any(|l| {
                        l.starts_with("Uid:")
                            && l.split_whitespace().nth(1) == Some(&uid.to_string())
                    })
                })
                .unwrap_or(false)
        })
        .count()
}

/// Whether a simple command succeeds within four tries of `timeout_ms` each: a timeout
/// clears a flooded sandbox, so the next try may work.
async fn recovers(env: &TestEnv, sid: &str, timeout_ms: u64) -> bool {
    for _ in 0..4 {
        let out = env
            .call(sid, "bash", json!({"command": "ls -d /workspace && echo alive", "timeout_ms": timeout_ms}))
            .await;
        if text(&out).contains("alive") {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn cwd_and_env_persist_between_calls() {
    bounded(async {
        let env = TestEnv::new();
        assert_eq!(env.bash("s1", "pwd").await, "/workspace\n");
        env.bash(
            "s1",
            "mkdir -p sub/dir && cd sub/dir && export GREETING=hello && f() { echo fn-$1; }",
        )
        .await;
        assert_eq!(
            env.bash("s1", "pwd; echo $GREETING; f x").await,
            "/workspace/sub/dir\nhello\nfn-x\n"
        );
        let s = env.bash("s1", "echo $HOME; whoami; nice; ulimit -u -n").await;
        assert_eq!(s, "/workspace\nuser\n10\nmax user processes                  (-u) 256\nopen files                          (-n) 4096\n");
    })
    .await;
}

#[tokio::test]
async fn exit_code_is_reported_but_not_an_error() {
    bounded(async {
        let env = TestEnv::new();
        let out = env
            .call(
                "s1",
                "bash",
                json!({"command": "echo out; echo err >&2; false"}),
            )
            .await;
        assert!(!out.is_error);
        assert_eq!(text(&out), "out\nerr\nExit code: 1");
        let out = env
            .call("s1", "bash", json!({"command": "(exit 42)"}))
            .await;
        assert_eq!(text(&out), "Exit code: 42");
        let out = env.call("s1", "bash", json!({"command": "true"})).await;
        assert_eq!(text(&out), "(no output)");
        // The command's own stdin is /dev/null: it cannot swallow the protocol.
        assert_eq!(env.bash("s1", "cat; read x; echo after").await, "after\n");
        // Quoting, heredocs and a syntax error behave as in bash.
        assert_eq!(
            env.bash("s1", "cat <<'EOF'\n$HOME 'q' \"d\"\nEOF").await,
            "$HOME 'q' \"d\"\n"
        );
        let out = env.bash("s1", "echo \"unterminated").await;
        assert!(
            out.contains("unexpected EOF") && out.contains("Exit code: 2"),
            "{out}"
        );
        assert_eq!(env.bash("s1", "echo still here").await, "still here\n");
    })
    .await;
}

#[tokio::test]
async fn timeout_kills_the_command_not_the_shell() {
    bounded(async {
        let env = TestEnv::new();
        env.bash("s1", "mkdir -p deep && cd deep && export KEEP=1")
            .await;
        let t = Instant::now();
        let out = env
            .call(
                "s1",
                "bash",
                json!({"command": "echo started; sleep 600", "timeout_ms": 1500}),
            )
            .await;
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "took {:?}",
            t.elapsed()
        );
        assert!(out.is_error);
        let s = text(&out);
        assert!(
            s.starts_with("started\n") && s.contains("timed out after 1.5 s"),
            "{s}"
        );
        assert!(s.contains("the shell is still running"), "{s}");
        assert_eq!(
            env.bash("s1", "pwd; echo $KEEP; pgrep -c sleep || true")
                .await,
            "/workspace/deep\n1\n0\n"
        );
    })
    .await;
}

#[tokio::test]
async fn a_command_ignoring_sigterm_is_still_killed() {
    bounded(async {
        let env = TestEnv::new();
        let t = Instant::now();
        let cmd = "trap '' TERM INT HUP; bash -c 'trap \"\" TERM INT HUP; while :; do sleep 1; done' & wait";
        let out = env.call("s1", "bash", json!({"command": cmd, "timeout_ms": 1000})).await;
        assert!(out.is_error, "{}", text(&out));
        assert!(t.elapsed() < Duration::from_secs(6), "took {:?}", t.elapsed());
        assert_eq!(env.bash("s1", "pgrep -c -f 'while' || true").await, "0\n");
        assert_eq!(env.bash("s1", "echo ok").await, "ok\n");
    })
    .await;
}

#[tokio::test]
async fn a_busy_loop_in_the_shell_itself_ends_with_a_new_shell() {
    bounded(async {
        let env = TestEnv::new();
        env.bash("s1", "export GONE=1").await;
        let out = env
            .call(
                "s1",
                "bash",
                json!({"command": "while :; do :; done", "timeout_ms": 500}),
            )
            .await;
        assert!(out.is_error);
        assert!(
            text(&out).contains("together with the shell"),
            "{}",
            text(&out)
        );
        let s = env.bash("s1", "echo \"[$GONE]\"").await;
        assert!(
            s.contains("A new shell was started") && s.ends_with("[]\n"),
            "{s}"
        );
    })
    .await;
}

#[tokio::test]
async fn background_processes_do_not_block_and_survive() {
    bounded(async {
        let env = TestEnv::new();
        let t = Instant::now();
        let out = env.bash("s1", "sleep 1000 & echo started").await;
        assert_eq!(out, "started\n");
        assert!(t.elapsed() < Duration::from_secs(3));
        // Also with nohup, a subshell and output redirected elsewhere.
        env.bash("s1", "(sleep 1000 &) ; nohup sleep 1000 >/dev/null 2>&1 &").await;
        let count = "for i in $(seq 100); do [ $(pgrep -c -f '^sleep 1000$') = 3 ] && break; sleep 0.05; done; pgrep -c -f '^sleep 1000$'";
        assert_eq!(env.bash("s1", count).await, "3\n");
        // A later command's timeout kills only what that command started.
        env.call("s1", "bash", json!({"command": "sleep 700 & sleep 700", "timeout_ms": 300})).await;
        // (bash reports the killed background job, as a terminal would.)
        let s = env.bash("s1", "pgrep -c -f '^sleep 700$' ; pgrep -c -f '^sleep 1000$'").await;
        assert!(s.ends_with("0\n3\n"), "{s}");
    })
    .await;
}

#[tokio::test]
async fn huge_output_is_capped_and_saved_in_full() {
    bounded(async {
        let env = TestEnv::new();
        let out = env.call("s1", "bash", json!({"command": "yes 0123456789abcdefghi | head -c 100000000; echo; echo THE-END"})).await;
        assert!(!out.is_error);
        let s = text(&out);
        assert!(s.chars().count() <= 100_000 + 500, "{} chars", s.chars().count());
        assert!(s.starts_with("0123456789abcdefghi\n"));
        assert!(s.contains("THE-END"), "the tail is shown");
        let path = s
            .split_whitespace()
            .find(|w| w.starts_with("/workspace/.openma/outputs/"))
            .unwrap_or_else(|| panic!("names the saved file: {}", &s[s.len().saturating_sub(600)..]))
            .trim_end_matches(['.', ']']);
        let host = env.workspace("s1").join(path.strip_prefix("/workspace/").unwrap());
        let meta = std::fs::metadata(&host).unwrap();
        assert_eq!(meta.len(), 100_000_009);
        use std::os::unix::fs::MetadataExt;
        assert_eq!(Some(meta.uid()), env.sandboxes.session_uid("s1"));
        // The sandbox can read it too.
        assert_eq!(env.bash("s1", &format!("wc -c < {path}")).await, "100000009\n");
    })
    .await;
}

#[tokio::test]
async fn a_fork_bomb_is_contained_and_the_sandbox_recovers() {
    bounded(async {
        let env = TestEnv::new();
        // Its own uid even when another run of this suite is going on: processes are counted by uid.
        let sid = &format!("bomb-{}", ulid::Ulid::new().to_string().to_lowercase());
        let uid = env.sandboxes.session_uid(sid).expect("tests run as root");
        env.bash(sid, "echo warm").await;
        let out = env
            .call(
                sid,
                "bash",
                json!({"command": ":(){ :|:& };:; sleep 3; echo done", "timeout_ms": 8000}),
            )
            .await;
        assert!(
            text(&out).contains("Resource temporarily unavailable"),
            "{}",
            text(&out)
        );
        // Never more processes than the limit (+ bubblewrap's two).
        let count = uid_processes(uid);
        assert!(count <= 256 + 8, "{count} processes of the sandbox uid");
        // The bomb keeps running in the background; a command that cannot fork times out,
        // the timeout clears the sandbox, and then it works again (or a new shell does).
        assert!(recovers(&env, sid, 3000).await, "the sandbox did not recover");
    })
    .await;
}

#[tokio::test]
async fn a_background_process_flood_is_cleared_by_a_later_timeout() {
    bounded(async {
        let env = TestEnv::new();
        // Its own uid even when another run of this suite is going on: processes are counted by uid.
        let sid = &format!("flood-{}", ulid::Ulid::new().to_string().to_lowercase());
        // Fills the process limit for good, from the background.
        let out = env
            .bash(
                sid,
                "(while :; do sleep 1000 & done) >/dev/null 2>&1 & echo started",
            )
            .await;
        assert!(out.starts_with("started"), "{out}");
        let uid = env.sandboxes.session_uid(sid).unwrap();
        // Full, not nearly full: with a free slot left (a loaded machine fills it slowly) the
        // next command would simply run, and no timeout would clear anything.
        let deadline = Instant::now() + Duration::from_secs(20);
        while uid_processes(uid) < 256 {
            assert!(
                Instant::now() < deadline,
                "the flood never reached the limit"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(recovers(&env, sid, 2000).await, "the sandbox did not recover");
        assert_eq!(
            env.bash(sid, "pgrep -c -f '^sleep 1000$' || true").await,
            "0\n"
        );
    })
    .await;
}

#[tokio::test]
async fn a_memory_hog_fails() {
    bounded(async {
        let env = TestEnv::new();
        let out = env
            .bash(
                "s1",
                "perl -e '$x = \"a\" x (3 * 1024 * 1024 * 1024); print length $x'",
            )
            .await;
        assert!(
            out.contains("Out of memory") || out.contains("Exit code"),
            "{out}"
        );
        assert!(!out.contains("3221225472"), "{out}");
        assert_eq!(env.bash("s1", "echo fine").await, "fine\n");
    })
    .await;
}

#[tokio::test]
async fn exit_then_next_call_starts_a_new_shell() {
    bounded(async {
        let env = TestEnv::new();
        env.bash("s1", "mkdir d && cd d && export X=1").await;
        let out = env
            .call("s1", "bash", json!({"command": "echo bye; exit 3"}))
            .await;
        let s = text(&out);
        assert!(
            s.starts_with("bye\n") && s.contains("The shell exited with code 3"),
            "{s}"
        );
        let s = env.bash("s1", "pwd; echo \"[$X]\"").await;
        assert!(
            s.contains("A new shell was started") && s.contains("reset"),
            "{s}"
        );
        assert!(s.ends_with("/workspace\n[]\n"), "{s}");
        // Files survive the shell.
        assert_eq!(env.bash("s1", "ls").await, "d\n");
    })
    .await;
}

#[tokio::test]
async fn restart_flag_restarts_the_shell() {
    bounded(async {
        let env = TestEnv::new();
        env.bash("s1", "export X=1; cd /tmp").await;
        let out = env.call("s1", "bash", json!({"restart": true})).await;
        assert!(!out.is_error);
        assert!(text(&out).contains("restarted"), "{}", text(&out));
        assert_eq!(
            env.bash("s1", "pwd; echo \"[$X]\"").await,
            "/workspace\n[]\n"
        );
        let out = env
            .call(
                "s1",
                "bash",
                json!({"restart": true, "command": "echo again"}),
            )
            .await;
        assert!(text(&out).ends_with("again\n"), "{}", text(&out));
    })
    .await;
}

#[tokio::test]
async fn a_server_restart_keeps_the_workspace_and_says_the_shell_is_new() {
    bounded(async {
        let env = TestEnv::new();
        env.bash("s1", "echo data > kept.txt; export X=1").await;
        let restarted = env.restarted();
        drop(env.sandboxes.clone());
        let s = restarted.bash("s1", "cat kept.txt; echo \"[$X]\"").await;
        assert!(
            s.contains("server restarted") && s.ends_with("data\n[]\n"),
            "{s}"
        );
    })
    .await;
}

#[tokio::test]
async fn destroy_kills_processes_and_removes_the_workspace() {
    bounded(async {
        let env = TestEnv::new();
        env.bash("s1", "echo x > f; sleep 1000 &").await;
        let pids = env.sandboxes.sandbox_pids("s1");
        assert!(pids.len() >= 4, "{pids:?}");
        assert!(env.sandboxes.memory_kib("s1") > 0);
        env.sandboxes.destroy("s1").await.unwrap();
        assert!(!env.root.join("s1").exists());
        for pid in pids {
            assert!(
                !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "pid {pid} survived"
            );
        }
        // Destroying again, or a session never used, is fine.
        env.sandboxes.destroy("s1").await.unwrap();
        env.sandboxes.destroy("never").await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn reap_idle_stops_idle_shells_but_keeps_files() {
    bounded(async {
        let env = TestEnv::with(|c| c.idle_timeout = Duration::from_millis(300));
        env.bash("s1", "echo x > f; export X=1").await;
        assert_eq!(env.sandboxes.reap_idle().await, 0);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(env.sandboxes.reap_idle().await, 1);
        assert!(env.sandboxes.sandbox_pids("s1").is_empty());
        let s = env.bash("s1", "cat f; echo \"[$X]\"").await;
        assert!(s.contains("idle") && s.ends_with("x\n[]\n"), "{s}");
    })
    .await;
}

#[tokio::test]
async fn bad_bash_input_is_an_error_result() {
    bounded(async {
        let env = TestEnv::new();
        for input in [
            json!({}),
            json!({"command": 5}),
            json!({"command": "ls", "timeout_ms": "soon"}),
            json!("ls"),
            json!({"command": "  "}),
        ] {
            let out = env.call("s1", "bash", input.clone()).await;
            assert!(out.is_error, "{input}");
            assert!(text(&out).contains("bash"), "{}", text(&out));
        }
        let ctx_bad = env.call("../evil", "bash", json!({"command": "ls"})).await;
        assert!(ctx_bad.is_error);
    })
    .await;
}

#[tokio::test]
async fn sessions_are_isolated_from_each_other_and_the_host() {
    bounded(async {
        let env = TestEnv::new();
        env.bash("other", "echo other-secret > mine.txt").await;
        let secret = env.base.join("secret.txt");
        let other = env.workspace("other").join("mine.txt");
        let s = env.bash("s1", &format!("cat {} {} 2>&1; ls /root /home 2>&1", secret.display(), other.display())).await;
        assert!(!s.contains(common::SECRET) && !s.contains("other-secret"), "{s}");
        assert!(s.contains("No such file"), "{s}");
        // The host's /etc is not there: only the generated files and harmless ones.
        let s = env.bash("s1", "cat /etc/shadow 2>&1; ls /etc; cat /etc/passwd | wc -l").await;
        assert!(s.contains("No such file"), "{s}");
        assert!(!s.contains("shadow\n"), "{s}");
        // Read-only system, private /tmp, no network but loopback, separate pid namespace.
        let s = env.bash("s1", "touch /usr/x 2>&1; touch /x 2>&1; echo t > /tmp/t && cat /tmp/t; ls /sys/class/net 2>&1 | tr '\\n' ' '; ps -e --no-headers | wc -l").await;
        assert!(s.contains("Read-only file system"), "{s}");
        assert!(s.contains("t\n"), "{s}");
        assert!(!s.contains("eth0"), "{s}");
        let s = env.bash("s1", "getent hosts example.com || echo no-dns; (exec 3<>/dev/tcp/1.1.1.1/53) 2>&1 | head -1").await;
        assert!(s.contains("no-dns") && s.contains("unreachable"), "{s}");
    })
    .await;
}

#[tokio::test]
async fn preflight_refuses_a_root_the_session_uids_cannot_reach() {
    bounded(async {
        use std::os::unix::fs::PermissionsExt;
        let env = TestEnv::new();
        env.sandboxes.preflight().unwrap();
        let closed = env.base.join("closed");
        std::fs::create_dir(&closed).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        let hidden = Sandboxes::new(SandboxConfig {
            root: closed.join("sandboxes"),
            ..env.sandboxes.config().clone()
        });
        let err = hidden.preflight().unwrap_err();
        assert!(err.contains("chmod o+x"), "{err}");
        // A tool call says why instead of failing obscurely.
        let tools: std::collections::HashMap<_, _> = hidden.tools().into_iter().collect();
        let ctx = openma_core::harness::tools::ToolContext {
            tenant: openma_core::tenancy::TenantId::from_trusted("t"),
            session_id: "s1".into(),
            environment_id: "e".into(),
            config: None,
        };
        let out = tools["bash"].run(&ctx, json!({"command": "true"})).await;
        assert!(
            out.is_error && text(&out).contains("preflight"),
            "{}",
            text(&out)
        );
    })
    .await;
}

#[test]
fn check_reports_the_bubblewrap_version() {
    let v = Sandboxes::check().unwrap();
    assert!(v.starts_with("bubblewrap "), "{v}");
}

#[tokio::test]
async fn an_interrupted_call_ends_its_command_and_the_next_call_says_so() {
    bounded(async {
        let env = TestEnv::new();
        env.bash("s1", "export X=1").await;
        let ctx = openma_core::harness::tools::ToolContext {
            tenant: openma_core::tenancy::TenantId::from_trusted("t"),
            session_id: "s1".into(),
            environment_id: "e".into(),
            config: None,
        };
        // The harness drops the call (user.interrupt) while `sleep` runs.
        let call = env
            .tool("bash")
            .run(&ctx, json!({"command": "sleep 30; echo late"}));
        assert!(
            tokio::time::timeout(Duration::from_millis(500), call)
                .await
                .is_err()
        );
        let t = Instant::now();
        let s = env
            .bash("s1", "echo \"[$X]\"; pgrep -c sleep || true")
            .await;
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert!(s.contains("interrupted") && s.ends_with("[]\n0\n"), "{s}");
        assert!(!s.contains("late"), "{s}");
    })
    .await;
}
