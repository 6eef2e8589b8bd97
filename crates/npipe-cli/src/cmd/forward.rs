//! `npipe forward LOCAL REMOTE`: a pipe on this machine whose clients are served
//! by another pipe, usually on another machine (`\\HOST\pipe\NAME`, through ssh).

use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{AccessArg, ModeArg};
use crate::units::parse_duration;

pub(crate) const AFTER_HELP: &str = "\
Examples:
  npipe forward jobs '\\\\build-01\\pipe\\jobs'    # local pipe jobs, served on build-01
  npipe call jobs hello                        # from here, as if jobs were local
  npipe forward shared '\\\\db\\pipe\\q' --access group --server-uid 0

Creates LOCAL (owner only by default: --access widens it, as for `serve`) and, for
each client that connects to it, opens a connection of its own to REMOTE (for a
remote pipe: an ssh connection running `npipe bridge` on HOST) and copies bytes both
ways until either side closes. The bytes pass unchanged, so LOCAL's clients see
REMOTE's framing end to end; --mode is REMOTE's mode, recorded for LOCAL so that
`npipe info` and `npipe call` know it. A client whose connection to REMOTE fails is
disconnected, and the reason is logged on stderr.
Ctrl-C or SIGTERM stops accepting at once (LOCAL disappears), lets connections
finish within the grace period, then cuts them off; a second Ctrl-C exits at once.";

/// `npipe forward` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The pipe to create on this machine.
    pub(crate) local: String,

    /// The pipe that serves LOCAL's clients: \\HOST\pipe\NAME, or a pipe here.
    pub(crate) remote: String,

    /// REMOTE's mode, recorded for LOCAL (the bytes pass through unchanged).
    #[arg(short, long, value_enum, default_value_t = ModeArg::Message)]
    pub(crate) mode: ModeArg,

    /// Who may connect to LOCAL.
    #[arg(short, long, value_enum, default_value_t = AccessArg::Owner)]
    pub(crate) access: AccessArg,

    /// How long each connection to REMOTE may wait for the pipe to appear or an
    /// instance to be free (connecting to HOST through ssh comes on top).
    #[arg(short, long, default_value = "5s", value_parser = parse_duration, value_name = "DUR")]
    pub(crate) timeout: Duration,

    /// Require REMOTE's server to run as this user id (on HOST, for a remote pipe).
    #[arg(long, value_name = "UID")]
    pub(crate) server_uid: Option<u32>,

    /// How long connections may take to finish at Ctrl-C or SIGTERM.
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_duration)]
    pub(crate) grace: Duration,
}

/// Runs `npipe forward`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    imp::run(args)
}

#[cfg(unix)]
mod imp {
    use std::collections::HashMap;
    use std::net::Shutdown;
    use std::os::fd::{AsFd, AsRawFd, RawFd};
    use std::os::unix::net::UnixStream;
    use std::process::ExitCode;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::thread::{self, JoinHandle};
    use std::time::{Duration, Instant};

    use anyhow::Context;

    use super::Args;
    use crate::exit;
    use crate::relay::splice;

    /// How long the exit waits, after cutting connections off, for their ssh
    /// clients to be reaped (npipe kills one after 5 s).
    const REAP_AT_EXIT: Duration = Duration::from_secs(7);

    pub(super) fn run(args: Args) -> anyhow::Result<ExitCode> {
        let control = Arc::new(Control::default());
        stop_on_signal(Arc::clone(&control))?;

        let mut connect = npipe::ConnectOptions::new();
        connect.mode(npipe::Mode::Byte).timeout(args.timeout);
        if let Some(uid) = args.server_uid {
            connect.expect_server_uid(uid);
        }
        // Once now, so that what cannot work (ssh cannot log in, npipe missing on
        // HOST, an invalid name) is said before any client comes.
        match npipe::wait(args.remote.as_str(), Duration::ZERO) {
            Ok(()) => {}
            Err(e) if npipe::ErrorKind::of(&e) == npipe::ErrorKind::Timeout => {
                tracing::warn!(
                    "{} has no server yet; each client waits up to {} for it",
                    args.remote,
                    crate::units::format_duration(args.timeout)
                );
            }
            Err(e) => return Err(e).with_context(|| format!("reaching pipe {}", args.remote)),
        }

        let listener = crate::cmd::creating(
            npipe::ListenerOptions::new()
                .mode(args.mode.into())
                .access(args.access.into())
                .create(args.local.as_str()),
            &args.local,
        )?;
        if control.watch(listener.as_raw_fd()) {
            return Ok(exit::code(exit::SUCCESS));
        }
        eprintln!(
            "npipe: forwarding {} at {} to {} ({} mode, access {}); Ctrl-C to stop",
            listener.name(),
            listener.address(),
            args.remote,
            npipe::Mode::from(args.mode).as_str(),
            npipe::Access::from(args.access).as_str(),
        );

        let remote: Arc<str> = Arc::from(args.remote.as_str());
        let active = Arc::new(Active::default());
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        let mut next_id = 0u64;
        loop {
            let accepted = listener.accept();
            if control.stopping() {
                break;
            }
            let local = match accepted.map(npipe::Stream::into_std) {
                Ok(Ok(local)) => local,
                // A fresh server end has read nothing ahead.
                Ok(Err(_)) => continue,
                Err(e) => {
                    tracing::warn!("accepting a client on {}: {e}", args.local);
                    thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            next_id += 1;
            let (id, remote, connect, active) = (
                next_id,
                Arc::clone(&remote),
                connect.clone(),
                Arc::clone(&active),
            );
            threads.retain(|t| !t.is_finished());
            let spawned = thread::Builder::new()
                .name(format!("npipe-forward-{id}"))
                .spawn(move || forward_one(id, local, &remote, &connect, &active));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => tracing::warn!("cannot start a thread for client {id}: {e}"),
            }
        }
        // LOCAL disappears now: no new clients.
        control.unwatch();
        drop(listener);

        let grace_over = Instant::now() + args.grace;
        while threads.iter().any(|t| !t.is_finished()) && Instant::now() < grace_over {
            thread::sleep(Duration::from_millis(10));
        }
        if threads.iter().any(|t| !t.is_finished()) {
            tracing::warn!("grace period over: cutting the remaining connections off");
            active.cut_all();
        }
        // A connection still connecting (through ssh: the login, then the wait on
        // HOST) is cut off as soon as it connects; wait for that too, so that no
        // ssh client outlives forward.
        let reaped = Instant::now() + npipe::REMOTE_SETUP + args.timeout + REAP_AT_EXIT;
        while threads.iter().any(|t| !t.is_finished()) && Instant::now() < reaped {
            thread::sleep(Duration::from_millis(10));
        }
        eprintln!(
            "npipe: forwarded {} connection{} ({} could not reach {})",
            next_id,
            if next_id == 1 { "" } else { "s" },
            active.failed.load(Ordering::Relaxed),
            args.remote
        );
        Ok(exit::code(exit::SUCCESS))
    }

    /// One client of LOCAL: a connection of its own to REMOTE, and the bytes
    /// copied both ways until either side closes.
    fn forward_one(
        id: u64,
        local: UnixStream,
        remote: &str,
        connect: &npipe::ConnectOptions,
        active: &Active,
    ) {
        let stream = match connect.connect(remote) {
            Ok(stream) => stream,
            Err(e) => {
                active.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("client {id}: connecting to {remote}: {e}");
                return;
            }
        };
        tracing::info!(client = id, server_uid = ?stream.peer_credentials().ok().and_then(|p| p.uid()), "connected to {remote}");
        let remote_sock = match stream.as_fd().try_clone_to_owned() {
            Ok(fd) => UnixStream::from(fd),
            Err(e) => {
                tracing::warn!("client {id}: {e}");
                return;
            }
        };
        active.register(id, &local, &remote_sock);
        if let Err(e) = splice(local, remote_sock) {
            tracing::warn!("client {id}: relaying: {e}");
        }
        active.unregister(id);
        // Waits for the ssh client of a remote pipe to exit.
        let _ = stream.disconnect();
        tracing::info!(client = id, "closed");
    }

    /// The connections being relayed, to cut them off when the grace period is
    /// over; and how many clients could not reach REMOTE.
    #[derive(Debug, Default)]
    struct Active {
        relays: Mutex<Relays>,
        failed: AtomicU64,
    }

    #[derive(Debug, Default)]
    struct Relays {
        /// Each connection's local and remote sockets (duplicates).
        sockets: HashMap<u64, [Option<UnixStream>; 2]>,
        /// The grace period is over: connections are cut off as they come.
        cut: bool,
    }

    impl Active {
        fn lock(&self) -> MutexGuard<'_, Relays> {
            self.relays.lock().unwrap_or_else(|e| e.into_inner())
        }

        fn register(&self, id: u64, local: &UnixStream, remote: &UnixStream) {
            let mut relays = self.lock();
            if relays.cut {
                let _ = local.shutdown(Shutdown::Both);
                let _ = remote.shutdown(Shutdown::Both);
            }
            relays
                .sockets
                .insert(id, [local.try_clone().ok(), remote.try_clone().ok()]);
        }

        fn unregister(&self, id: u64) {
            self.lock().sockets.remove(&id);
        }

        fn cut_all(&self) {
            let mut relays = self.lock();
            relays.cut = true;
            for sock in relays.sockets.values().flatten().flatten() {
                let _ = sock.shutdown(Shutdown::Both);
            }
        }
    }

    /// What the signal thread and the main thread share: whether to stop, and
    /// the listening socket to wake `accept` on.
    #[derive(Debug, Default)]
    struct Control {
        state: Mutex<(bool, Option<RawFd>)>,
    }

    impl Control {
        fn lock(&self) -> MutexGuard<'_, (bool, Option<RawFd>)> {
            self.state.lock().unwrap_or_else(|e| e.into_inner())
        }

        /// Hands the listener to the signal thread; `true` if a signal already came.
        fn watch(&self, listener: RawFd) -> bool {
            let mut state = self.lock();
            state.1 = Some(listener);
            state.0
        }

        /// The listener is about to close: the signal thread must not touch it.
        fn unwatch(&self) {
            self.lock().1 = None;
        }

        fn stopping(&self) -> bool {
            self.lock().0
        }
    }

    /// Ctrl-C or SIGTERM: stop accepting (wake `accept`); a second one exits at once.
    fn stop_on_signal(control: Arc<Control>) -> anyhow::Result<()> {
        crate::sys::on_stop_signals(move || {
            let mut state = control.lock();
            if state.0 {
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
            state.0 = true;
            eprintln!("npipe: shutting down");
            if let Some(fd) = state.1 {
                crate::sys::wake_accept(fd);
            }
        })
        .context("blocking signals")
    }
}

#[cfg(not(unix))]
mod imp {
    use std::process::ExitCode;

    use super::Args;

    pub(super) fn run(_args: Args) -> anyhow::Result<ExitCode> {
        anyhow::bail!("forward is not available on this platform yet")
    }
}
