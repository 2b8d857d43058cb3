//! The sandbox network bridge as a binary of its own, for this crate's tests and for embedders
//! (the `openma` binary serves the same code as its hidden `openma sandbox-bridge` command).
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    openma_sandbox::network::bridge::bridge_main(std::env::args().skip(1))
}
