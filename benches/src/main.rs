// See lib.rs: an internal harness, not a published API.
#![allow(missing_docs)]

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use npipe_bench::{command, roles};

/// Benchmarks npipe-style IPC transports (server and clients in separate
/// processes) against hand-written Unix domain sockets, `interprocess` and
/// Tokio.
#[derive(Parser)]
#[command(name = "npipe-bench", version)]
struct Cli {
    #[command(flatten)]
    args: command::Args,
    #[command(subcommand)]
    role: Option<roles::Role>,
}

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.role {
        Some(role) => roles::child_main(role).map(|()| ExitCode::SUCCESS),
        None => command::run(&cli.args),
    }
}
