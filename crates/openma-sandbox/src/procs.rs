//! The host's view of a sandbox's processes, read from /proc, and killing them without
//! hitting a recycled pid.
//!
//! Every process of a sandbox descends from bwrap's pid-1 "init" (orphans are reparented
//! to it), so the tree under that init is exactly the sandbox. Signals go through a pidfd
//! opened *before* checking the process's start time, so a pid that was reused between the
//! scan and the kill is never signalled.

use std::collections::HashSet;
use std::fs;

use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

/// A process as identified across time: pid plus its start time (clock ticks since boot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ProcId {
    pub pid: u32,
    pub start: u64,
}

/// Start time (field 22 of /proc/<pid>/stat), None when the process is gone.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may itself contain spaces and ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    // `rest` starts at field 3 (state); the start time is field 22.
    rest.split(' ').nth(22 - 3)?.parse().ok()
}

/// CPU time of a process in clock ticks: its own user and system time and that of its
/// waited-for children (fields 14–17 of `/proc/<pid>/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    let Some(close) = stat.rfind(')') else { return 0 };
    stat[close + 2..].split(' ').skip(14 - 3).take(4).filter_map(|f| f.parse::<u64>().ok()).sum()
}

/// CPU milliseconds used so far by a process tree (the tree's processes, and the
/// children they already reaped).
pub(crate) fn tree_cpu_ms(root: u32) -> u64 {
    let ticks: u64 = std::iter::once(root).chain(descendants(root).into_iter().map(|p| p.pid)).map(cpu_ticks).sum();
    let hz = rustix::param::clock_ticks_per_second().max(1);
    ticks * 1000 / hz
}

/// Direct children of `pid` (all of its threads' children).
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path().join("children");
        if let Ok(list) = fs::read_to_string(path) {
            out.extend(
                list.split_ascii_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// Every process below `root` (not `root` itself), with start times.
pub(crate) fn descendants(root: u32) -> Vec<ProcId> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        for child in children(pid) {
            if !seen.insert(child) {
                continue;
            }
            if let Some(start) = start_time(child) {
                out.push(ProcId { pid: child, start });
            }
            stack.push(child);
        }
    }
    out
}

/// Sends `sig` to the process if it is still the one identified by `id`.
pub(crate) fn signal(id: ProcId, sig: Signal) -> bool {
    let Some(pid) = Pid::from_raw(id.pid as i32) else {
        return false;
    };
    let Ok(fd) = pidfd_open(pid, PidfdFlags::empty()) else {
        return false;
    };
    if start_time(id.pid) != Some(id.start) {
        return false;
    }
    pidfd_send_signal(&fd, sig).is_ok()
}

/// Kills every process under `root` that `spare` does not protect, until none is left
/// (a fork bomb keeps making new ones: each round first stops them all so they cannot fork,
/// then kills them). Returns how many were killed.
pub(crate) fn kill_tree(root: u32, spare: impl Fn(&ProcId) -> bool) -> usize {
    let mut killed = 0;
    for _ in 0..200 {
        let victims: Vec<ProcId> = descendants(root)
            .into_iter()
            .filter(|p| !spare(p))
            .collect();
        if victims.is_empty() {
            break;
        }
        for v in &victims {
            signal(*v, Signal::STOP);
        }
        for v in &victims {
            if signal(*v, Signal::KILL) {
                killed += 1;
            }
        }
    }
    killed
}

/// Resident memory of a process in KiB (VmRSS), 0 when unknown.
pub fn rss_kib(pid: u32) -> u64 {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_start_time_and_children() {
        let me = std::process::id();
        assert!(start_time(me).is_some());
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let kids = descendants(me);
        assert!(kids.iter().any(|p| p.pid == child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn stale_identity_is_not_signalled() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let id = ProcId {
            pid: child.id(),
            start: start_time(child.id()).unwrap() + 1,
        };
        assert!(!signal(id, Signal::KILL));
        let real = ProcId {
            pid: child.id(),
            start: id.start - 1,
        };
        assert!(signal(real, Signal::KILL));
        child.wait().unwrap();
    }
}
