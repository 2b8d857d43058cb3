//! `openma-fake-model --listen 127.0.0.1:0`: serve the scripted fake provider and print
//! one line, `fake model listening on http://HOST:PORT`, once it accepts connections, so
//! a test harness can read the port from stdout.

use std::io::Write;
use std::net::SocketAddr;

use clap::Parser;
use openma_fake_model::{FakeModel, Reply};

#[derive(Parser)]
#[command(about = "A scripted fake Anthropic/OpenAI model provider for tests")]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Text answered when the script is empty.
    #[arg(long, default_value = "ok")]
    default_text: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let fake = FakeModel::bind_with_default(args.listen, Reply::text(args.default_text)).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "fake model listening on {}", fake.base_url())?;
    stdout.flush()?;
    drop(stdout);
    tokio::select! {
        _ = fake.wait() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
