//! `npipe`: Windows named pipes on every OS from the command line.
//!
//! Each verb lives in `cmd/<verb>.rs` with its `Args` and a `run` function; this file
//! parses the command line, sets up logging, and turns errors into the exit codes
//! documented in `exit.rs` (and in `npipe --help`).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

mod child;
mod cli;
mod cmd;
mod exit;
mod relay;
mod stats;
mod table;
mod units;

use cli::{Cli, Command};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(error) => {
            if error.downcast_ref::<exit::StdoutClosed>().is_some() {
                return exit::code(exit::SUCCESS);
            }
            let code = exit::code_for(&error);
            // `{:#}` prints the whole chain: "calling orders: pipe not found: ...".
            let _ = writeln!(std::io::stderr(), "npipe: {error:#}");
            exit::code(code)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with status 0; usage errors to stderr
            // with status 2.
            let _ = e.print();
            return Ok(exit::code(match e.exit_code() {
                0 => exit::SUCCESS,
                _ => exit::USAGE,
            }));
        }
    };
    init_logging(cli.verbose);
    match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::Call(args) => cmd::call::run(args),
        Command::Send(args) => cmd::send::run(args),
        Command::Listen(args) => cmd::listen::run(args),
        Command::Info(args) => cmd::info::run(args),
        Command::List(args) => cmd::list::run(args),
        Command::Wait(args) => cmd::wait::run(args),
        Command::Demo(args) => cmd::demo::run(args, cli.verbose),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Completions(args) => cmd::completions::run(args),
        Command::DemoClient(args) => cmd::demo::run_client(args),
        Command::BenchServer(args) => cmd::bench::run_server(args),
        Command::BenchClient(args) => cmd::bench::run_client(args),
    }
}

/// Logs to stderr: warnings by default, more with each `-v`.
fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        2 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(verbose >= 2)
        .try_init();
}
