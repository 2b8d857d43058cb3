//! The binary announces its address on stdout and serves the control API there.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

/// One HTTP/1.1 request over a plain socket (no HTTP client needed for one GET).
async fn http_get(addr: &str, path: &str) -> String {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn prints_its_address_and_serves() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_openma-fake-model"))
        .args(["--listen", "127.0.0.1:0", "--default-text", "hello from the binary"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let test = async {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).await.unwrap();
        let url = line.trim().strip_prefix("fake model listening on http://").expect(&line).to_owned();
        assert!(url.starts_with("127.0.0.1:") && !url.ends_with(":0"), "{line}");
        let response = http_get(&url, "/_fake/health").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("\"status\":\"ok\""), "{response}");
        assert!(response.contains("hello from the binary"), "{response}");
    };
    tokio::time::timeout(Duration::from_secs(15), test).await.expect("deadline");
    child.kill().await.unwrap();
}
