//! The root secret end to end with the real binary: generated on first start into a
//! 0600 file, rotated with `openma secrets rotate`, and a wrong one refused at start-up.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn openma(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_openma"));
    c.arg("--data-dir").arg(dir).env_remove("PLATFORM_ROOT_SECRET").env("RUST_LOG", "warn");
    c
}

/// Starts the server; `Ok` once it is listening (then stops it), `Err(stderr)` when it
/// refuses to start.
fn start_and_stop(dir: &Path, env: &[(&str, &str)]) -> Result<(), String> {
    let mut cmd = openma(dir);
    cmd.args(["serve", "--listen", "127.0.0.1:0"]).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    if line.starts_with("openma listening on") {
        let _ = child.kill();
        let _ = child.wait();
        return Ok(());
    }
    let out = child.wait_with_output().unwrap();
    Err(String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn root_secret_is_generated_rotated_and_checked_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    start_and_stop(dir.path(), &[]).expect("first start");
    let file = dir.path().join("root.secret");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the generated root secret is private");
    let first = std::fs::read_to_string(&file).unwrap();

    let out = openma(dir.path()).args(["secrets", "rotate"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let second = std::fs::read_to_string(&file).unwrap();
    assert_ne!(first, second, "rotation writes a new root");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(second.trim()), "the new secret is not printed in file mode");
    start_and_stop(dir.path(), &[]).expect("starts with the rotated root");

    // the old root no longer opens anything
    std::fs::write(&file, &first).unwrap();
    let err = start_and_stop(dir.path(), &[]).expect_err("a wrong root must be refused");
    assert!(err.contains("does not match"), "{err}");
    std::fs::write(&file, &second).unwrap();

    // an explicit root must be long enough, and must match the database too
    let short = start_and_stop(dir.path(), &[("PLATFORM_ROOT_SECRET", "too-short")]).expect_err("short root");
    assert!(short.contains("at least 32 characters"), "{short}");
    let other = start_and_stop(dir.path(), &[("PLATFORM_ROOT_SECRET", &"y".repeat(40))]).expect_err("other root");
    assert!(other.contains("does not match"), "{other}");
    std::thread::sleep(Duration::from_millis(10));
    start_and_stop(dir.path(), &[]).expect("the right root still works");
}
