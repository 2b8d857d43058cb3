//! The bridge: the only way out of a sandbox's network namespace. It runs inside the
//! sandbox, listens on the sandbox's own loopback (`127.0.0.1:3128`, where `HTTP_PROXY`
//! points) and relays every TCP connection, byte for byte, to the host's egress proxy
//! through the Unix socket bound into the sandbox. It decides nothing: the proxy does.
//!
//! Plain std (threads, no async runtime), so that it starts in a millisecond and costs a few
//! hundred KiB per sandbox. It is compiled into the `openma` binary as the hidden
//! `openma sandbox-bridge` command, bound read-only into the sandbox and started as the
//! first process of the session, before the shell:
//!
//! ```text
//! openma sandbox-bridge --listen 127.0.0.1:3128 --unix /run/openma/egress/egress.sock -- bash --noprofile --norc
//! ```
//!
//! With a command after `--`, it starts a copy of itself as the relay (in its own process
//! group, so a `kill 0` of the shell's group spares it), waits until that listens, then
//! becomes the command (exec), keeping its pid: the shell.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

/// Stack of each relay thread: it only copies through an 8 KiB buffer.
const THREAD_STACK: usize = 128 * 1024;
const READY: &str = "ready";

/// Entry point of `openma sandbox-bridge …` (arguments after the program name; a leading
/// `sandbox-bridge` is skipped).
pub fn bridge_main(args: impl IntoIterator<Item = String>) -> ExitCode {
    let mut args = args.into_iter().peekable();
    if args.peek().map(String::as_str) == Some("sandbox-bridge") {
        args.next();
    }
    let mut listen: Option<SocketAddr> = None;
    let mut unix: Option<PathBuf> = None;
    let mut then: Vec<String> = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().and_then(|v| v.parse().ok()),
            "--unix" => unix = args.next().map(PathBuf::from),
            "--" => {
                then = args.by_ref().collect();
            }
            other => {
                eprintln!("openma sandbox-bridge: unknown argument {other:?}");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(listen), Some(unix)) = (listen, unix) else {
        eprintln!("usage: openma sandbox-bridge --listen 127.0.0.1:PORT --unix SOCKET [-- COMMAND ARGS…]");
        return ExitCode::from(2);
    };
    if then.is_empty() {
        return match serve(listen, &unix) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                // the parent reads this line instead of "ready"
                println!("error: cannot listen on {listen}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match start_then_exec(listen, &unix, &then) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("openma sandbox-bridge: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the relay as a child, waits for it to listen, then execs `command`.
fn start_then_exec(listen: SocketAddr, unix: &Path, command: &[String]) -> Result<std::convert::Infallible, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find its own executable: {e}"))?;
    let mut child = Command::new(exe)
        .args(["sandbox-bridge", "--listen", &listen.to_string(), "--unix"])
        .arg(unix)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start the network relay: {e}"))?;
    let out = child.stdout.take().ok_or("no pipe to the relay")?;
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).map_err(|e| format!("the network relay did not start: {e}"))?;
    if line.trim() != READY {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("the network relay did not start: {}", line.trim()));
    }
    // the relay's pipe end was close-on-exec; the relay lives on as our (the command's) child
    let err = Command::new(&command[0]).args(&command[1..]).exec();
    Err(format!("cannot run {}: {err}", command[0]))
}

/// Listens, says "ready" on stdout, and relays each connection on a thread of its own.
fn serve(listen: SocketAddr, unix: &Path) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    {
        let mut out = io::stdout().lock();
        writeln!(out, "{READY}")?;
        out.flush()?;
    }
    loop {
        let tcp = match listener.accept() {
            Ok((tcp, _)) => tcp,
            // out of descriptors or threads: let connections finish rather than spin
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let unix = unix.to_path_buf();
        // a connection that gets no thread is dropped (the client sees it closed)
        let _ = std::thread::Builder::new().stack_size(THREAD_STACK).spawn(move || relay(tcp, &unix));
    }
}

/// Copies both ways between the sandbox's client and the proxy until both sides are done.
fn relay(tcp: TcpStream, unix: &Path) {
    let Ok(proxy) = UnixStream::connect(unix) else {
        return;
    };
    let _ = tcp.set_nodelay(true);
    let (Ok(mut tcp_in), Ok(mut proxy_out)) = (tcp.try_clone(), proxy.try_clone()) else {
        return;
    };
    let Ok(upstream) = std::thread::Builder::new().stack_size(THREAD_STACK).spawn(move || {
        let _ = io::copy(&mut tcp_in, &mut proxy_out);
        let _ = proxy_out.shutdown(Shutdown::Write);
    }) else {
        return;
    };
    let (mut proxy_in, mut tcp_out) = (proxy, tcp);
    let _ = io::copy(&mut proxy_in, &mut tcp_out);
    let _ = tcp_out.shutdown(Shutdown::Write);
    let _ = upstream.join();
}
