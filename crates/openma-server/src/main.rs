//! The `openma` binary: parse the command line, run one command.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Hidden: the network bridge run inside each networked sandbox (see openma-sandbox's
    // `network::bridge`); nothing of the server starts for it.
    if std::env::args_os().nth(1).is_some_and(|a| a == "sandbox-bridge") {
        return openma_sandbox::network::bridge::bridge_main(std::env::args().skip(1));
    }
    // reqwest's rustls needs its crypto provider before any client exists
    openma_models::install_tls_provider();
    let cli = openma_server::cli::Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(openma_server::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
