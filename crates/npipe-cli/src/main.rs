//! `npipe`: Windows named pipes on every OS from the command line.
//!
//! Each verb lives in `cmd/<verb>.rs` with its `Args` and a `run` function; this file
//! parses the command line, sets up logging, and turns errors into the exit codes
//! documented in `exit.rs` (and in `npipe --help`).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

mod cli;
mod cmd;
mod exec;
mod exit;
mod relay;
// Every OS call of the CLI; Windows needs none beyond std and the library.
#[cfg(unix)]
mod sys;
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
        Err(e) => return Ok(exit::parse_error(&e)),
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
        Command::Bridge(args) => cmd::bridge::run(args),
        Command::Forward(args) => cmd::forward::run(args),
        Command::Demo(args) => cmd::demo::run(args, cli.verbose),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Completions(args) => cmd::completions::run(args),
        Command::DemoClient(args) => cmd::demo::run_client(args),
        Command::BenchRole(role) => {
            npipe_bench::roles::child_main(role).map(|()| exit::code(exit::SUCCESS))
        }
    }
}

/// Logs to stderr: warnings by default; `-v` adds the server's connections (npipe's
/// debug events) and the CLI's requests, `-vv` everything at debug, `-vvv` trace.
fn init_logging(verbose: u8) {
    use tracing::Level;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = match verbose {
        0 => Targets::new().with_default(Level::WARN),
        1 => Targets::new()
            .with_default(Level::INFO)
            .with_target("npipe::server", Level::DEBUG),
        2 => Targets::new().with_default(Level::DEBUG),
        _ => Targets::new().with_default(Level::TRACE),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(verbose >= 2);
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(filter)
        .try_init();
}
