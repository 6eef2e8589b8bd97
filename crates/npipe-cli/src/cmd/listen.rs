//! `npipe listen NAME`: create a byte pipe, accept one client, relay stdin/stdout,
//! like `nc -l`.

use std::process::ExitCode;

use std::sync::{Arc, Mutex, Weak};

use anyhow::Context;

use crate::cli::AccessArg;
use crate::exit;
use crate::relay::relay;

pub(crate) const AFTER_HELP: &str = "\
Examples:
  npipe listen chat                   # then, elsewhere: npipe send chat
  npipe listen upload > file.tar      # receive a file sent with: npipe send upload < file.tar
  npipe listen shared --access group  # let the group connect too

Creates a byte-mode pipe, waits for one client and removes the name as soon as the
client is accepted (a second `listen` can take it). stdin goes to the client and the
client's bytes to stdout. At stdin's EOF the write side is closed; the command ends
once the client has closed too.";

/// `npipe listen` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The pipe's name.
    pub(crate) name: String,

    /// Who may connect.
    #[arg(short, long, value_enum, default_value_t = AccessArg::Owner)]
    pub(crate) access: AccessArg,
}

/// Runs `npipe listen`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let control = Arc::new(Control::default());
    stop_on_signal(Arc::clone(&control))?;
    let listener = crate::cmd::creating(
        npipe::ListenerOptions::new()
            .mode(npipe::Mode::Byte)
            .access(args.access.into())
            .pending_instances(1)
            .create(args.name.as_str()),
        &args.name,
    )?;
    tracing::info!(pipe = %args.name, address = %listener.address(), "listening");
    let listener = Arc::new(listener);
    if control.watch(&listener) {
        // Interrupted while the pipe was being created: dropping it removes its files.
        return Ok(exit::code(exit::INTERRUPTED));
    }
    let accepted = listener.accept();
    // Dropping the only strong handle removes the name: a second `listen` can take it.
    drop(listener);
    if control.start_relaying() {
        return Ok(exit::code(exit::INTERRUPTED));
    }
    let stream = accepted.with_context(|| format!("accepting a client on pipe {}", args.name))?;
    if let Ok(peer) = stream.peer_credentials() {
        tracing::info!(pipe = %args.name, client_pid = ?peer.pid(), client_uid = ?peer.uid(), "client connected");
    }
    relay(stream)?;
    Ok(exit::code(exit::SUCCESS))
}

/// What the signal thread and the main thread share, under one lock so that a signal
/// arriving at any moment is either seen by the main thread or acted on by the signal
/// thread, never missed.
#[derive(Debug, Default)]
struct Control {
    state: Mutex<ControlState>,
}

#[derive(Debug, Default)]
struct ControlState {
    interrupted: bool,
    relaying: bool,
    listener: Option<Weak<npipe::Listener>>,
}

impl Control {
    fn lock(&self) -> std::sync::MutexGuard<'_, ControlState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands the listener to the signal thread; `true` if a signal already came.
    fn watch(&self, listener: &Arc<npipe::Listener>) -> bool {
        let mut state = self.lock();
        state.listener = Some(Arc::downgrade(listener));
        state.interrupted
    }

    /// From now on a signal exits at once; `true` if one already came.
    fn start_relaying(&self) -> bool {
        let mut state = self.lock();
        state.relaying = true;
        state.interrupted
    }
}

/// Ctrl-C or SIGTERM: while waiting for a client, wake `accept` so the listener is
/// dropped and its socket and lock files removed; while relaying, exit at once
/// (status 130, as a shell reports Ctrl-C). Only the first signal counts.
#[cfg(unix)]
fn stop_on_signal(control: Arc<Control>) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;

    crate::sys::on_stop_signals(move || {
        let mut state = control.lock();
        if state.interrupted {
            return;
        }
        state.interrupted = true;
        if state.relaying {
            std::process::exit(i32::from(exit::INTERRUPTED));
        }
        if let Some(listener) = state.listener.as_ref().and_then(Weak::upgrade) {
            crate::sys::wake_accept(listener.as_raw_fd());
        }
        // Otherwise the main thread is still creating the pipe and sees the flag.
    })
    .context("blocking signals")
}

#[cfg(not(unix))]
fn stop_on_signal(_control: Arc<Control>) -> anyhow::Result<()> {
    Ok(())
}
