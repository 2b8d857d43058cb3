//! `openma bench --scenario files`: one large file uploaded and downloaded through the
//! Files API of a server running as a child process (its memory is its own), with a
//! local blob directory or the S3-compatible store `--blob-url` names. The upload body is
//! generated as it is sent and the download is counted as it arrives, so the client holds
//! no copy either; the server's peak RSS shows whether anything was buffered whole.

use std::time::Instant;

use anyhow::Context;
use futures::StreamExt;

use crate::bench::BenchArgs;
use crate::bench_runtime::{KEY, spawn_server_with};

const CHUNK: usize = 1024 * 1024;

/// The server's peak resident memory so far, in KiB.
fn hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("openma-bench-files-{}", ulid::Ulid::new()));
    let mut env = vec![("OPENMA_MAX_FILE_MB".to_owned(), (args.file_mb + 1).to_string())];
    if let Some(url) = &args.blob_url {
        env.push(("OPENMA_BLOB_URL".to_owned(), url.clone()));
    }
    let server = spawn_server_with("http://127.0.0.1:9", &dir, args.postgres_url.as_deref(), &env)?;
    let pid = server.child.id();
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let size = args.file_mb * 1024 * 1024;
    let store = args.blob_url.as_deref().map_or("local directory".to_owned(), |u| u.split('?').next().unwrap_or(u).to_owned());
    println!("openma bench files — {} MiB through POST /v1/files and GET /v1/files/{{id}}/content, blobs in {store}", args.file_mb);
    let hwm_start = hwm_kib(pid);

    let boundary = "openma-bench-boundary-4f7d2c";
    let head = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"bench.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n");
    let tail = format!("\r\n--{boundary}--\r\n");
    let chunks = size.div_ceil(CHUNK as u64);
    let body = futures::stream::iter(
        std::iter::once(bytes::Bytes::from(head))
            .chain((0..chunks).map(move |i| {
                let n = (size - i * CHUNK as u64).min(CHUNK as u64) as usize;
                bytes::Bytes::from(vec![(i % 251) as u8; n])
            }))
            .chain(std::iter::once(bytes::Bytes::from(tail)))
            .map(Ok::<_, std::io::Error>),
    );
    let t = Instant::now();
    let meta: serde_json::Value = http
        .post(format!("{base}/v1/files"))
        .bearer_auth(KEY)
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let up = t.elapsed();
    anyhow::ensure!(meta["size_bytes"].as_u64() == Some(size), "the server stored {} bytes, not {size}", meta["size_bytes"]);
    let hwm_up = hwm_kib(pid);
    let id = meta["id"].as_str().context("no file id")?.to_owned();

    let t = Instant::now();
    let resp = http.get(format!("{base}/v1/files/{id}/content")).bearer_auth(KEY).send().await?.error_for_status()?;
    let mut stream = resp.bytes_stream();
    let mut got: u64 = 0;
    while let Some(chunk) = stream.next().await {
        got += chunk?.len() as u64;
    }
    let down = t.elapsed();
    anyhow::ensure!(got == size, "downloaded {got} bytes, not {size}");
    let hwm_down = hwm_kib(pid);

    let mib = args.file_mb as f64;
    println!("{:<44} {:>10.1} MiB/s ({:.2} s)", "upload (multipart, streamed to the store)", mib / up.as_secs_f64(), up.as_secs_f64());
    println!("{:<44} {:>10.1} MiB/s ({:.2} s)", "download (streamed from the store)", mib / down.as_secs_f64(), down.as_secs_f64());
    println!("{:<44} {:>10.1} MiB", "server peak RSS before", hwm_start as f64 / 1024.0);
    println!("{:<44} {:>10.1} MiB", "server peak RSS after upload / download", hwm_up as f64 / 1024.0);
    println!("{:<44} {:>10.1} MiB", "  (after download)", hwm_down as f64 / 1024.0);
    println!("{:<44} {:>10.1} MiB", "peak growth while moving the file", hwm_down.saturating_sub(hwm_start) as f64 / 1024.0);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
