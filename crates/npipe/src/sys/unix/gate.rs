//! Instance accounting: `max_instances` and `pending_instances` on a Unix socket.
//!
//! Windows counts pipe instances in the kernel: a client finds a listening instance
//! or gets `ERROR_PIPE_BUSY`. A Unix listening socket instead completes connections
//! into its accept queue while there is room, and a blocking `connect` waits (up to
//! `SO_SNDTIMEO`) while the queue is full — which is exactly `WaitNamedPipe`. So the
//! gate keeps the queue's room equal to the instances the server can still take:
//!
//! - room = min(pending_instances, max_instances - connected). On Linux the queue
//!   holds `backlog + 1` connections, so the backlog is set to room - 1.
//! - When every instance is connected the room must be 0, which `listen` cannot
//!   express; the gate fills the single slot with a connection of its own (the
//!   *plug*), so other clients wait and get `PipeBusy` after their timeout. The plug
//!   is taken out as soon as an instance is released. No acceptor ever calls
//!   `accept` while the plug is in, so it is never handed to the application.
//! - Acceptors reserve an instance before calling `accept`, so concurrent acceptors
//!   never take more connections than there are free instances. Blocking acceptors
//!   wait on a condition variable ([`Gate::reserve`]); async ones (feature `tokio`)
//!   on a `Notify` ([`Gate::reserve_async`]). Both are woken whenever an instance or
//!   a reservation is given back.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};

use super::Endpoint;

#[derive(Debug)]
pub(crate) struct Gate {
    max: Option<u32>,
    pending: u32,
    /// The pipe, for the plug: a connection of the server to itself.
    address: Endpoint,
    listener: Weak<UnixListener>,
    state: Mutex<State>,
    cond: Condvar,
    /// Wakes async acceptors waiting in `reserve_async`.
    #[cfg(feature = "tokio")]
    notify: tokio::sync::Notify,
}

#[derive(Debug)]
struct State {
    connected: u32,
    accepting: u32,
    backlog: Option<i32>,
    plug: Option<UnixStream>,
    /// The socket was given back ([`Gate::hand_back`]): leave it alone.
    handed_back: bool,
}

/// One connected instance; releases it when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    gate: Arc<Gate>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.release();
    }
}

impl Gate {
    pub(crate) fn new(
        listener: &Arc<UnixListener>,
        address: Endpoint,
        max: Option<u32>,
        pending: u32,
    ) -> io::Result<Arc<Gate>> {
        let gate = Arc::new(Gate {
            max,
            pending,
            address,
            listener: Arc::downgrade(listener),
            state: Mutex::new(State {
                connected: 0,
                accepting: 0,
                backlog: None,
                plug: None,
                handed_back: false,
            }),
            cond: Condvar::new(),
            #[cfg(feature = "tokio")]
            notify: tokio::sync::Notify::new(),
        });
        let mut state = gate.lock();
        gate.apply(&mut state, listener)?;
        drop(state);
        Ok(gate)
    }

    /// The backlog to pass to `listen` for a first call, before the gate exists.
    pub(crate) fn initial_backlog(max: Option<u32>, pending: u32) -> i32 {
        backlog_for(room(max, pending, 0))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain counters behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connected instances now.
    pub(crate) fn connected(&self) -> u32 {
        self.lock().connected
    }

    /// Blocks until an instance is free for one more `accept`.
    pub(crate) fn reserve(&self) {
        let mut state = self.lock();
        if let Some(max) = self.max {
            while state.connected + state.accepting >= max {
                state = self.cond.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        }
        state.accepting += 1;
    }

    /// Reserves an instance for one more `accept` if one is free now.
    #[cfg(feature = "tokio")]
    pub(crate) fn try_reserve(&self) -> bool {
        let mut state = self.lock();
        if self
            .max
            .is_some_and(|max| state.connected + state.accepting >= max)
        {
            return false;
        }
        state.accepting += 1;
        true
    }

    /// Waits until an instance is free for one more `accept`, then reserves it.
    ///
    /// Cancel safe: the reservation is taken only when the future completes.
    #[cfg(feature = "tokio")]
    pub(crate) async fn reserve_async(&self) {
        loop {
            let released = self.notify.notified();
            let mut released = std::pin::pin!(released);
            // Register before looking, so a release in between is not missed.
            released.as_mut().enable();
            if self.try_reserve() {
                return;
            }
            released.await;
        }
    }

    /// How many clients could connect now without waiting: the accept queue's room.
    #[cfg(feature = "tokio")]
    pub(crate) fn listening(&self) -> u32 {
        room(self.max, self.pending, self.lock().connected)
    }

    /// Gives back a reservation whose `accept` produced no connection.
    pub(crate) fn unreserve(&self) {
        let mut state = self.lock();
        state.accepting -= 1;
        drop(state);
        self.wake_acceptors();
    }

    /// Turns a reservation into a connected instance.
    pub(crate) fn admit(self: &Arc<Self>) -> Slot {
        let mut state = self.lock();
        state.accepting -= 1;
        state.connected += 1;
        if let Some(listener) = self.listener.upgrade() {
            if let Err(e) = self.apply(&mut state, &listener) {
                // The gate is an optimisation of who waits where; failing to adjust
                // it never loses a connection, so note it and carry on.
                tracing::warn!(error = %e, "could not adjust the accept queue");
            }
        }
        Slot {
            gate: Arc::clone(self),
        }
    }

    fn release(&self) {
        let mut state = self.lock();
        state.connected -= 1;
        if let Some(listener) = self.listener.upgrade() {
            if state.plug.is_some() {
                unplug(&mut state, &listener);
            }
            if let Err(e) = self.apply(&mut state, &listener) {
                tracing::warn!(error = %e, "could not adjust the accept queue");
            }
        } else {
            state.plug = None;
        }
        drop(state);
        self.wake_acceptors();
    }

    /// Wakes acceptors waiting for a free instance. Only a gate with
    /// `max_instances` ever makes them wait, and waking costs a system call
    /// (`futex`) on every connection even when nobody waits, so an unlimited
    /// gate skips it.
    fn wake_acceptors(&self) {
        if self.max.is_none() {
            return;
        }
        self.cond.notify_one();
        #[cfg(feature = "tokio")]
        self.notify.notify_waiters();
    }

    /// Gives a socket npipe did not create back to its owner (a service manager)
    /// as such owners leave it: the plug taken out of the accept queue (else the
    /// manager would see a client waiting and start the server again for it), and
    /// the backlog set to the system's maximum (`SOMAXCONN`, systemd's default
    /// `Backlog=`), so that clients queue while no server runs. The gate leaves
    /// the socket alone from then on.
    pub(crate) fn hand_back(&self, listener: &UnixListener) {
        let mut state = self.lock();
        if state.plug.is_some() {
            unplug(&mut state, listener);
        }
        state.handed_back = true;
        let _ = nix::sys::socket::listen(listener, nix::sys::socket::Backlog::MAXCONN);
    }

    /// Sets the accept queue's room for the current number of connected instances.
    fn apply(&self, state: &mut State, listener: &UnixListener) -> io::Result<()> {
        if state.handed_back {
            return Ok(());
        }
        let room = room(self.max, self.pending, state.connected);
        let backlog = backlog_for(room);
        if state.backlog != Some(backlog) {
            listen(listener, backlog)?;
            state.backlog = Some(backlog);
        }
        if room == 0
            && cfg!(any(target_os = "linux", target_os = "android"))
            && state.plug.is_none()
        {
            // If a client slipped into the single slot first, it waits there for the
            // next free instance and acts as the plug.
            state.plug = super::connect::raw_connect(&self.address, None).ok();
        }
        Ok(())
    }
}

/// Takes the plug out of the accept queue. The queue holds exactly the plug: its
/// room was one and the plug filled it, and nobody accepts while it is in.
fn unplug(state: &mut State, listener: &UnixListener) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    if matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) {
        let _ = listener.accept();
    }
    state.plug = None;
}

fn room(max: Option<u32>, pending: u32, connected: u32) -> u32 {
    match max {
        Some(max) => pending.min(max.saturating_sub(connected)),
        None => pending,
    }
}

/// The `listen` backlog that gives `room` places in the accept queue.
fn backlog_for(room: u32) -> i32 {
    let room = i32::try_from(room).unwrap_or(i32::MAX);
    if cfg!(any(target_os = "linux", target_os = "android")) {
        // Linux queues backlog + 1 connections.
        (room - 1).max(0)
    } else {
        room.max(1)
    }
}

pub(crate) fn listen(listener: &impl AsFd, backlog: i32) -> io::Result<()> {
    use nix::sys::socket::Backlog;
    let backlog = Backlog::new(backlog).map_err(io::Error::from)?;
    nix::sys::socket::listen(listener, backlog)?;
    Ok(())
}
