//! `npipe serve NAME`: a request/response server built on `npipe::Server`.

use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{AccessArg, ModeArg};
use crate::units::{parse_duration, parse_size_u32};

pub(crate) const AFTER_HELP: &str = "\
Examples:
  npipe serve orders                  # replies \"Response to: <request>\"
  npipe serve orders --echo -v        # replies with the request; logs connections
  npipe serve upper --exec 'tr a-z A-Z'
  npipe serve shared --access group --instances 16 --idle-timeout 30s
  npipe serve orders --remote         # Windows: clients on other machines too

Handlers: none (the original demo server's \"Response to: <request>\"), --echo, or
--exec CMD: CMD runs through `sh -c` for each request, with the request on stdin; its
stdout is the reply. When it exits non-zero the request fails: the server closes that
connection without replying (`npipe call` exits 8) and counts it as failed. CMD runs
in a process group of its own, killed when the request ends: when CMD exits (what it
left in the background goes too), when the request deadline passes, when the client
has gone (message mode), or at shutdown.
Ctrl-C or SIGTERM stops accepting at once, lets requests in flight finish within the
grace period, stops what is left, and prints the statistics (JSON with --json).

Socket activation: started by a service manager with a listening socket
(LISTEN_PID is this process, LISTEN_FDS, LISTEN_FDNAMES: systemd's ListenStream=,
or `systemd-socket-activate -l PATH`), serve serves that socket instead of creating
the pipe: the one named NAME (FileDescriptorName=), else the only one, else the one
bound to NAME's address, which it must be bound to. The manager owns the socket
file: serve writes no lock or record beside it and never removes it; the access
policy is checked on every client's credentials whatever the file's mode. The
variables are removed before any command runs, and the socket is not inherited.

--remote (Windows): clients on other machines open \\\\THIS-MACHINE\\pipe\\NAME
through SMB (without it the system refuses them). --access decides who they may be,
as for local users, by the account they logged on to this machine as: owner (the
default) admits only this user's own account (a domain account, from another
machine), group the members of its primary group, everyone every account this
machine authenticates. On Unix, clients on other machines come through ssh as local
users of this machine, and --remote changes nothing.";

/// `npipe serve` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The pipe's name (or an absolute socket path, Unix).
    pub(crate) name: String,

    /// Reply with the request unchanged.
    #[arg(long, conflicts_with = "exec")]
    pub(crate) echo: bool,

    /// Run CMD (with `sh -c`) for each request: the request on its stdin, its stdout
    /// is the reply; on a non-zero exit the connection is closed without a reply.
    /// Every process of CMD's process group is killed when its request ends.
    #[arg(long, value_name = "CMD")]
    pub(crate) exec: Option<String>,

    /// The pipe's mode.
    #[arg(short, long, value_enum, default_value_t = ModeArg::Message)]
    pub(crate) mode: ModeArg,

    /// At most N clients connected at once, 1..=254 (default: unlimited).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=254))]
    pub(crate) instances: Option<u32>,

    /// Listening instances kept ready for bursts of clients.
    #[arg(long, value_name = "N", default_value_t = npipe::DEFAULT_PENDING_INSTANCES,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) pending: u32,

    /// Largest request accepted; larger ones are refused before allocation.
    #[arg(long, value_name = "BYTES", default_value = "16MiB", value_parser = parse_size_u32)]
    pub(crate) max_message: u32,

    /// Close a connection idle this long between requests (`0`: never).
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_optional_duration)]
    pub(crate) idle_timeout: std::option::Option<Duration>,

    /// Close a connection whose request takes longer than this from its first byte
    /// to the end of its reply (`0`: no limit).
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = parse_optional_duration)]
    pub(crate) request_timeout: std::option::Option<Duration>,

    /// Who may connect.
    #[arg(short, long, value_enum, default_value_t = AccessArg::Owner)]
    pub(crate) access: AccessArg,

    /// Also accept clients on other machines (Windows, through SMB); --access still
    /// decides which accounts may connect. Changes nothing on Unix.
    #[arg(long)]
    pub(crate) remote: bool,

    /// How long requests in flight may take to finish at shutdown; then they are cut
    /// off, their commands killed, and the server exits.
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_duration)]
    pub(crate) grace: Duration,

    /// Print the final statistics as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// A duration where `0` means "no limit".
fn parse_optional_duration(text: &str) -> Result<Option<Duration>, String> {
    parse_duration(text).map(|d| (!d.is_zero()).then_some(d))
}

/// Runs `npipe serve`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    imp::run(args)
}

/// The server, on `npipe::Server` (the library's tokio feature).
mod imp {
    use std::fmt::Write as _;
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use anyhow::Context;
    use serde_json::json;

    use super::Args;
    use crate::cmd::{print_json, write_stdout};
    use crate::exec::Commands;
    use crate::exit;
    use crate::units::format_duration;

    /// How long the exit may wait for handler threads, once their commands are
    /// killed and their requests cut off.
    const THREADS_AT_EXIT: Duration = Duration::from_millis(500);

    /// Runs `npipe serve`.
    pub(super) fn run(args: Args) -> anyhow::Result<ExitCode> {
        // Read before any thread exists, then removed (sd_listen_fds'
        // `unset_environment`): the commands of `--exec` must not see them.
        let activated = npipe::is_socket_activated();
        if activated {
            for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
                // Safe here: the process has one thread (the runtime starts below).
                std::env::remove_var(var);
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the tokio runtime")?;
        let result = runtime.block_on(serve(args, activated));
        // A handler past the grace period has been cut off and its command killed.
        // Dropping the runtime would still wait for its thread, however long the
        // handler takes to return: the server must exit after the grace period.
        runtime.shutdown_timeout(THREADS_AT_EXIT);
        result
    }

    async fn serve(args: Args, activated: bool) -> anyhow::Result<ExitCode> {
        let mut options = npipe::ListenerOptions::new();
        options
            .mode(args.mode.into())
            .access(args.access.into())
            .pending_instances(args.pending)
            .max_instances(args.instances)
            .max_message_size(args.max_message)
            .reject_remote_clients(!args.remote);
        let commands = Arc::new(Commands::new(tokio::runtime::Handle::current()));
        let handler = Handler::from_args(&args, &commands);
        let stop = shutdown_signal()?;
        let server = npipe::Server::builder(args.name.as_str())
            .options(options)
            .handler(move |request| handler.handle(request))
            .idle_timeout(args.idle_timeout)
            .request_timeout(args.request_timeout)
            .shutdown_grace(args.grace)
            .activation(activated)
            .bind();
        let server = if activated {
            crate::cmd::in_context(server, &args.name, "serving")?
        } else {
            crate::cmd::creating(server, &args.name)?
        };
        eprintln!(
            "npipe: serving {} at {}{} ({} mode, {}, access {}); Ctrl-C to stop",
            server.name(),
            server.address(),
            if activated {
                " on the socket the service manager passed"
            } else {
                ""
            },
            npipe::Mode::from(args.mode).as_str(),
            handler_description(&args),
            npipe::Access::from(args.access).as_str(),
        );
        if let Some(note) = remote_note(&args, server.name().as_str()) {
            eprintln!("npipe: {note}");
        }
        let handle = server.handle();
        let started = Instant::now();
        let served = server.run_until(stop).await;
        // Commands of requests cut off after the grace period, if any, go now.
        commands.kill_all();
        served.context("serving")?;
        let stats = handle.stats();
        let elapsed = started.elapsed();
        if args.json {
            print_json(&stats_json(&stats, elapsed))?;
        } else {
            write_stdout(stats_text(&stats, elapsed).as_bytes())?;
        }
        Ok(exit::code(exit::SUCCESS))
    }

    /// What `--remote` means here, said when the server starts.
    fn remote_note(args: &Args, pipe: &str) -> Option<String> {
        if !args.remote {
            return None;
        }
        if cfg!(windows) {
            let machine = std::env::var("COMPUTERNAME").unwrap_or_else(|_| "THIS-MACHINE".into());
            let access = npipe::Access::from(args.access).as_str();
            Some(format!(
                "clients on other machines may open \\\\{machine}\\pipe\\{pipe} (SMB), as accounts that --access {access} admits"
            ))
        } else {
            Some(
                "--remote changes nothing on Unix: clients on other machines reach this pipe through ssh, as local users of this machine"
                    .to_owned(),
            )
        }
    }

    fn handler_description(args: &Args) -> String {
        match (&args.exec, args.echo) {
            (Some(cmd), _) => format!("replies from `{cmd}`"),
            (None, true) => "echo".to_owned(),
            (None, false) => "replies \"Response to: <request>\"".to_owned(),
        }
    }

    /// Completes at Ctrl-C or (Unix) SIGTERM. The handlers are installed when this is
    /// called, not when the future is first polled, so a signal that arrives right after
    /// the pipe appears is not lost (its default action would kill the server and leave
    /// its files behind).
    fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut interrupt =
                signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
            let mut terminate =
                signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
            Ok(async move {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                eprintln!("npipe: shutting down");
            })
        }
        #[cfg(not(unix))]
        {
            Ok(async {
                let _ = tokio::signal::ctrl_c().await;
                eprintln!("npipe: shutting down");
            })
        }
    }

    /// What `serve` answers.
    #[derive(Debug, Clone)]
    enum Handler {
        /// The original demo server: `Response to: <request>`.
        Demo,
        Echo,
        Exec(String, Arc<Commands>),
    }

    impl Handler {
        fn from_args(args: &Args, commands: &Arc<Commands>) -> Handler {
            match (&args.exec, args.echo) {
                (Some(cmd), _) => Handler::Exec(cmd.clone(), Arc::clone(commands)),
                (None, true) => Handler::Echo,
                (None, false) => Handler::Demo,
            }
        }

        fn handle(&self, request: npipe::Request) -> npipe::Response {
            let peer = request.peer();
            tracing::info!(
                connection = request.connection(),
                request = request.sequence(),
                bytes = request.body().len(),
                client_pid = peer.and_then(|p| p.pid()),
                client_uid = peer.and_then(|p| p.uid()),
                "request"
            );
            match self {
                Handler::Demo => {
                    let mut reply = b"Response to: ".to_vec();
                    reply.extend_from_slice(request.body());
                    npipe::Response::from(reply)
                }
                Handler::Echo => npipe::Response::from(request.into_body()),
                Handler::Exec(cmd, commands) => match commands.run(cmd, &request) {
                    Ok(reply) => npipe::Response::from(reply),
                    Err(e) => {
                        tracing::warn!(command = %cmd, connection = request.connection(), "{e:#}");
                        // No in-band error reply: the server closes this connection
                        // without replying and counts the request as failed.
                        npipe::Response::fail(format!("{cmd}: {e:#}"))
                    }
                },
            }
        }
    }

    fn stats_json(stats: &npipe::Stats, elapsed: Duration) -> serde_json::Value {
        json!({
            "uptime_s": elapsed.as_secs_f64(),
            "accepted": stats.accepted,
            "active": stats.active,
            "requests": stats.requests,
            "completed": stats.completed,
            "failed": stats.failed,
            "rejected_busy": stats.rejected_busy,
            "rejected_access": stats.rejected_access,
            "rejected_oversize": stats.rejected_oversize,
            "timed_out": stats.timed_out,
            "requests_timed_out": stats.requests_timed_out,
            "bytes_in": stats.bytes_in,
            "bytes_out": stats.bytes_out,
        })
    }

    fn stats_text(stats: &npipe::Stats, elapsed: Duration) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "uptime             {}", format_duration(elapsed));
        let _ = writeln!(out, "connections        {}", stats.accepted);
        let _ = writeln!(out, "requests           {}", stats.requests);
        let _ = writeln!(out, "requests answered  {}", stats.completed);
        let _ = writeln!(out, "requests failed    {}", stats.failed);
        let _ = writeln!(
            out,
            "timed out          {} ({} requests, {} idle connections)",
            stats.timed_out,
            stats.requests_timed_out,
            stats.timed_out.saturating_sub(stats.requests_timed_out)
        );
        let _ = writeln!(
            out,
            "rejected           {} busy, {} access, {} oversize",
            stats.rejected_busy, stats.rejected_access, stats.rejected_oversize
        );
        let _ = writeln!(
            out,
            "bytes              {} in, {} out",
            stats.bytes_in, stats.bytes_out
        );
        out
    }
}
