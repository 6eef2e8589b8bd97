//! What a running server has done and what each instance is doing.

use std::collections::BTreeMap;
#[cfg(unix)]
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::handler::Cancels;
use crate::peer::PeerCredentials;

/// A snapshot of a server's counters and instances, from
/// [`ServerHandle::stats`](super::ServerHandle::stats).
///
/// # Requests
///
/// A request begins with its first byte, and is then counted in
/// [`requests`](Self::requests). It ends either answered
/// ([`completed`](Self::completed)) or without a reply, which closes its
/// connection; it is then counted in exactly one of [`failed`](Self::failed),
/// [`requests_timed_out`](Self::requests_timed_out) and
/// [`rejected_oversize`](Self::rejected_oversize). So at any time
///
/// ```text
/// requests == completed + failed + requests_timed_out + rejected_oversize + (requests in flight)
/// ```
///
/// and once the server is idle (or has stopped), nothing is in flight. Bytes that
/// arrive on a connection that shutdown has already claimed as idle are not a
/// request: the connection is closed without reading them.
///
/// # Examples
///
/// ```no_run
/// use npipe::{Response, Server};
///
/// let server = Server::builder("demo")
///     .handler(|request| Response::new(request.into_body()))
///     .spawn()?;
/// // ... later, from a status page or a log line:
/// let stats = server.stats();
/// println!(
///     "{} connections open, {} requests answered, {} failed, {} timed out, {} refused",
///     stats.active,
///     stats.completed,
///     stats.failed,
///     stats.requests_timed_out,
///     stats.rejected_access + stats.rejected_oversize,
/// );
/// println!("{} of {} instances ready for a client", stats.listening(), stats.instances.len());
/// # Ok::<(), std::io::Error>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted (admitted by the access policy).
    pub accepted: u64,
    /// Connections open now.
    pub active: u64,
    /// Requests begun: their first byte arrived.
    pub requests: u64,
    /// Requests answered (the reply was written in full; on an inbound pipe, the
    /// handler returned).
    pub completed: u64,
    /// Requests that ended without a reply for any reason but their deadline or an
    /// oversized request: the handler panicked or failed it
    /// ([`Response::fail`](super::Response::fail)), its reply was over the maximum
    /// message size, the client went away or broke the framing in the middle of it,
    /// or the server stopped it at the end of the shutdown grace period.
    pub failed: u64,
    /// Times every instance was connected (`max_instances` reached), so that new
    /// clients had to wait for one to be released. On Unix a waiting client is
    /// invisible to the server: whether it then gave up with `PipeBusy` after its
    /// connect timeout is known only to the client.
    pub rejected_busy: u64,
    /// Clients refused by the access policy (never reached the handler).
    pub rejected_access: u64,
    /// Requests refused because the client announced a message over the maximum
    /// message size (nothing was allocated for it); their connections were closed.
    pub rejected_oversize: u64,
    /// Connections closed because the idle timeout or the request deadline expired:
    /// the idle ones, and those counted in
    /// [`requests_timed_out`](Self::requests_timed_out).
    pub timed_out: u64,
    /// Requests cut off by the request deadline (read, handle and reply); their
    /// connections were closed without a reply.
    pub requests_timed_out: u64,
    /// Bytes received, frame headers included.
    pub bytes_in: u64,
    /// Bytes sent, frame headers included.
    pub bytes_out: u64,
    /// Every instance: the listening ones first (ready for a client), then the
    /// connected ones in connection order.
    pub instances: Vec<InstanceStatus>,
}

impl Stats {
    /// How many instances are listening, ready for a client without waiting.
    pub fn listening(&self) -> usize {
        self.instances
            .iter()
            .filter(|i| i.state == InstanceState::Listening)
            .count()
    }
}

/// What one instance is doing (the original `InterProcessConnectionState`).
///
/// # Examples
///
/// ```no_run
/// use npipe::server::InstanceState;
/// # let server = npipe::Server::builder("demo").handler(|_| npipe::Response::empty()).spawn()?;
///
/// let busy = server
///     .stats()
///     .instances
///     .iter()
///     .filter(|i| matches!(i.state, InstanceState::Handling | InstanceState::Writing))
///     .count();
/// println!("{busy} requests being answered");
/// # Ok::<(), std::io::Error>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceState {
    /// Waiting for a client to connect (`ConnectNamedPipe`).
    Listening,
    /// Connected, waiting for or reading a request.
    Reading,
    /// The handler is working on a request.
    Handling,
    /// Writing the reply.
    Writing,
}

impl InstanceState {
    /// `"listening"`, `"reading"`, `"handling"` or `"writing"`.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Listening => "listening",
            InstanceState::Reading => "reading",
            InstanceState::Handling => "handling",
            InstanceState::Writing => "writing",
        }
    }
}

/// One instance in [`Stats::instances`].
///
/// # Examples
///
/// What every instance is doing:
///
/// ```no_run
/// # let server = npipe::Server::builder("demo").handler(|_| npipe::Response::empty()).spawn()?;
/// for instance in server.stats().instances {
///     let client = instance.peer.and_then(|peer| peer.pid());
///     println!(
///         "{:10} connection {:?} client pid {client:?}: {} requests, for {:?}",
///         instance.state.as_str(),
///         instance.connection,
///         instance.requests,
///         instance.since,
///     );
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    /// What it is doing.
    pub state: InstanceState,
    /// The connection it serves (as in [`Request::connection`](super::Request::connection));
    /// `None` while listening.
    pub connection: Option<u64>,
    /// The client, if connected and the OS told.
    pub peer: Option<PeerCredentials>,
    /// Requests answered on this connection so far.
    pub requests: u64,
    /// How long it has been in this state.
    pub since: Duration,
}

/// The server's counters and its live connections.
///
/// The hot path touches only its own connection's [`Conn`] (atomics written by one
/// task or thread, so their cache lines do not bounce between CPUs); a connection's
/// figures are folded into the totals when it closes, under the registry lock, so
/// that a snapshot sees every request exactly once.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) rejected_busy: AtomicU64,
    pub(crate) rejected_oversize: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) requests_timed_out: AtomicU64,
    /// Totals of the connections that have closed.
    closed: Figures,
    connections: Mutex<BTreeMap<u64, Entry>>,
    /// The origin of [`Conn::since`].
    epoch: Instant,
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            accepted: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            rejected_busy: AtomicU64::new(0),
            rejected_oversize: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            requests_timed_out: AtomicU64::new(0),
            closed: Figures::default(),
            connections: Mutex::new(BTreeMap::new()),
            epoch: Instant::now(),
        }
    }
}

/// Requests begun and answered, and bytes moved.
#[derive(Debug, Default)]
struct Figures {
    begun: AtomicU64,
    completed: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl Figures {
    fn fold_into(&self, total: &Figures) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        add(&total.begun, get(&self.begun));
        add(&total.completed, get(&self.completed));
        add(&total.bytes_in, get(&self.bytes_in));
        add(&total.bytes_out, get(&self.bytes_out));
    }
}

#[derive(Debug)]
struct Entry {
    conn: Arc<Conn>,
    /// The task serving an async connection: aborted to close it at shutdown
    /// (cheaper than every connection watching a shared cancellation token).
    task: Option<tokio::task::AbortHandle>,
    /// A connection served on a thread of its own (Unix, sync handler): how to wake
    /// it from a blocking read at shutdown.
    #[cfg(unix)]
    wake: Option<Wake>,
}

/// How to reach a dedicated connection's socket from the shutdown paths, and its
/// claim on the server's task tracker: dropped at the hard stop, so that `run`
/// need not wait for a handler that overran the grace period.
#[cfg(unix)]
#[derive(Debug)]
pub(crate) struct Wake {
    pub(crate) socket: crate::sys::ShutdownHandle,
    pub(crate) token: Option<tokio_util::task::task_tracker::TaskTrackerToken>,
}

/// One connection's live state.
#[derive(Debug)]
pub(crate) struct Conn {
    /// A [`Phase`], as `u8`.
    phase: AtomicU8,
    /// When the phase began: nanoseconds since [`Counters::epoch`].
    since: AtomicU64,
    /// The request deadline of a dedicated connection's request in flight, in the
    /// same unit; 0: none.
    #[cfg(unix)]
    deadline: AtomicU64,
    /// The request whose handler runs or whose reply is being written (its
    /// sequence number); 0: none. What a hard stop or an overdue cut cancels.
    in_flight: AtomicU64,
    /// Whether a request has begun and is neither answered nor counted as
    /// unanswered yet: settled once, by its connection or by the hard stop.
    unsettled: AtomicBool,
    /// Which of its requests was cancelled (see `Request::cancellation`).
    pub(crate) cancels: Cancels,
    figures: Figures,
    peer: Option<PeerCredentials>,
}

/// What a connection is doing; finer than [`InstanceState`], for shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Between requests: shutdown may close it at once.
    Idle = 0,
    /// A request has begun arriving: it is in flight until its reply is written.
    Reading = 1,
    Handling = 2,
    Writing = 3,
    /// Shutdown has claimed it (it was idle, or the grace period is over).
    Closing = 4,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Idle,
            1 => Phase::Reading,
            2 => Phase::Handling,
            3 => Phase::Writing,
            _ => Phase::Closing,
        }
    }

    fn shown(self) -> InstanceState {
        match self {
            Phase::Idle | Phase::Reading | Phase::Closing => InstanceState::Reading,
            Phase::Handling => InstanceState::Handling,
            Phase::Writing => InstanceState::Writing,
        }
    }
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    fn connections(&self) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
        // Plain data behind the lock: a panic elsewhere cannot break it.
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn nanos_now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Registers a connection; it is unregistered when the guard drops.
    pub(crate) fn open(self: &Arc<Self>, id: u64, peer: Option<PeerCredentials>) -> Tracked {
        add(&self.accepted, 1);
        let conn = Arc::new(Conn {
            phase: AtomicU8::new(Phase::Idle as u8),
            since: AtomicU64::new(self.nanos_now()),
            #[cfg(unix)]
            deadline: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            unsettled: AtomicBool::new(false),
            cancels: Cancels::default(),
            figures: Figures::default(),
            peer,
        });
        self.connections().insert(
            id,
            Entry {
                conn: Arc::clone(&conn),
                task: None,
                #[cfg(unix)]
                wake: None,
            },
        );
        Tracked {
            counters: Arc::clone(self),
            conn,
            id,
        }
    }

    /// Gives a dedicated connection's socket to the shutdown paths.
    #[cfg(unix)]
    pub(crate) fn dedicate(&self, id: u64, wake: Wake) {
        if let Some(entry) = self.connections().get_mut(&id) {
            entry.wake = Some(wake);
        }
    }

    /// Gives an async connection's task to the shutdown paths.
    pub(crate) fn watch(&self, id: u64, task: tokio::task::AbortHandle) {
        if let Some(entry) = self.connections().get_mut(&id) {
            entry.task = Some(task);
        }
    }

    /// Graceful shutdown: closes the connections that are between requests; those
    /// with a request in flight finish it and then close themselves.
    pub(crate) fn close_idle(&self) {
        for entry in self.connections().values() {
            if !entry.conn.claim_idle() {
                continue;
            }
            if let Some(task) = &entry.task {
                task.abort();
            }
            #[cfg(unix)]
            if let Some(wake) = &entry.wake {
                wake.socket.shutdown(Shutdown::Read);
            }
        }
    }

    /// After the grace period: cuts every connection off, and stops waiting for
    /// threads still inside a handler.
    pub(crate) fn close_all(&self) {
        for entry in self.connections().values_mut() {
            entry
                .conn
                .phase
                .store(Phase::Closing as u8, Ordering::SeqCst);
            if let Some(task) = &entry.task {
                task.abort();
            }
            #[cfg(unix)]
            if let Some(wake) = &mut entry.wake {
                wake.socket.shutdown(Shutdown::Both);
                wake.token = None;
            }
            // A handler still running learns that its reply is no longer wanted
            // (once its client is cut off, so that it cannot answer after all).
            entry.conn.cancel_in_flight();
            // Counted now, not when its handler returns (a sync handler may run
            // on for long): the stats read when `run` returns count every request.
            if entry.conn.unsettled.swap(false, Ordering::SeqCst) {
                add(&self.failed, 1);
            }
        }
    }

    /// Cuts off the dedicated connections whose handler has overrun the request
    /// deadline, or whose client has gone (closed its end: no reply can reach
    /// it), and cancels their request: the client is told at the deadline (the
    /// connection closes, as on the async path), though the handler's thread runs
    /// on until it returns. Reads and writes need no help: their deadlines end
    /// them.
    #[cfg(unix)]
    pub(crate) fn cut_overdue(&self) {
        let now = self.nanos_now();
        for entry in self.connections().values() {
            let Some(wake) = &entry.wake else { continue };
            let conn = &entry.conn;
            if conn.phase.load(Ordering::Relaxed) != Phase::Handling as u8 {
                continue;
            }
            let deadline = conn.deadline.load(Ordering::Relaxed);
            let overdue = deadline != 0 && deadline <= now;
            if !overdue && !wake.socket.hung_up() {
                continue;
            }
            if conn
                .phase
                .compare_exchange(
                    Phase::Handling as u8,
                    Phase::Closing as u8,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok()
            {
                wake.socket.shutdown(Shutdown::Both);
                conn.cancel_in_flight();
            }
        }
    }

    pub(crate) fn snapshot(&self, listening: u32, rejected_access: u64) -> Stats {
        let now = self.nanos_now();
        let connections = self.connections();
        let mut instances: Vec<InstanceStatus> = (0..listening)
            .map(|_| InstanceStatus {
                state: InstanceState::Listening,
                connection: None,
                peer: None,
                requests: 0,
                since: Duration::ZERO,
            })
            .collect();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut requests = get(&self.closed.begun);
        let mut completed = get(&self.closed.completed);
        let mut bytes_in = get(&self.closed.bytes_in);
        let mut bytes_out = get(&self.closed.bytes_out);
        for (id, entry) in connections.iter() {
            let conn = &entry.conn;
            requests += get(&conn.figures.begun);
            let answered = get(&conn.figures.completed);
            completed += answered;
            bytes_in += get(&conn.figures.bytes_in);
            bytes_out += get(&conn.figures.bytes_out);
            instances.push(InstanceStatus {
                state: Phase::from_u8(conn.phase.load(Ordering::Relaxed)).shown(),
                connection: Some(*id),
                peer: conn.peer,
                requests: answered,
                since: Duration::from_nanos(now.saturating_sub(get(&conn.since))),
            });
        }
        Stats {
            accepted: get(&self.accepted),
            active: connections.len() as u64,
            requests,
            completed,
            failed: get(&self.failed),
            rejected_busy: get(&self.rejected_busy),
            rejected_access,
            rejected_oversize: get(&self.rejected_oversize),
            timed_out: get(&self.timed_out),
            requests_timed_out: get(&self.requests_timed_out),
            bytes_in,
            bytes_out,
            instances,
        }
    }
}

impl Conn {
    /// Cancels the request in flight, if any.
    fn cancel_in_flight(&self) {
        let sequence = self.in_flight.load(Ordering::SeqCst);
        if sequence != 0 {
            self.cancels.cancel(sequence);
        }
    }

    /// Shutdown's claim on an idle connection: `true` if it was idle (and is now
    /// closing), `false` if a request is in flight.
    fn claim_idle(&self) -> bool {
        self.phase
            .compare_exchange(
                Phase::Idle as u8,
                Phase::Closing as u8,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
    }
}

/// A connection's entry in the stats; removed when dropped.
#[derive(Debug)]
pub(crate) struct Tracked {
    counters: Arc<Counters>,
    conn: Arc<Conn>,
    id: u64,
}

/// How a request ended without a reply, for [`Tracked::unanswered`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unanswered {
    Failed,
    TimedOut,
    Oversize,
}

impl Tracked {
    /// Enters `phase`; `false` if shutdown has claimed the connection (it must
    /// close without starting anything new).
    pub(crate) fn enter(&self, phase: Phase) -> bool {
        let conn = &self.conn;
        let mut current = conn.phase.load(Ordering::SeqCst);
        loop {
            if current == Phase::Closing as u8 {
                return false;
            }
            match conn.phase.compare_exchange_weak(
                current,
                phase as u8,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        if matches!(phase, Phase::Idle | Phase::Reading) {
            // The phases of a request in flight share its start: one clock read
            // fewer per phase, and `since` tells how old the request is.
            conn.since
                .store(self.counters.nanos_now(), Ordering::Relaxed);
        }
        if phase == Phase::Reading {
            add(&conn.figures.begun, 1);
            conn.unsettled.store(true, Ordering::SeqCst);
        }
        true
    }

    /// When the current phase began (for a request in flight: when it began).
    pub(crate) fn since(&self) -> Instant {
        let nanos = self.conn.since.load(Ordering::Relaxed);
        self.counters.epoch + Duration::from_nanos(nanos)
    }

    /// A request has begun (see [`enter`](Self::enter)): returns its deadline,
    /// `limit` from now, and shows it to [`Counters::cut_overdue`] (Unix). `None`
    /// if shutdown has claimed the connection.
    pub(crate) fn begin_request(&self, limit: Option<Duration>) -> Option<Option<Instant>> {
        if !self.enter(Phase::Reading) {
            return None;
        }
        let Some(limit) = limit else {
            #[cfg(unix)]
            self.conn.deadline.store(0, Ordering::Relaxed);
            return Some(None);
        };
        let start = self.conn.since.load(Ordering::Relaxed);
        let deadline = start.saturating_add(u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX));
        #[cfg(unix)]
        self.conn.deadline.store(deadline.max(1), Ordering::Relaxed);
        Some(
            self.counters
                .epoch
                .checked_add(Duration::from_nanos(deadline)),
        )
    }

    /// Whether shutdown has claimed the connection.
    pub(crate) fn is_closing(&self) -> bool {
        self.conn.phase.load(Ordering::SeqCst) == Phase::Closing as u8
    }

    pub(crate) fn received(&self, bytes: u64) {
        add(&self.conn.figures.bytes_in, bytes);
    }

    /// The client, if the OS told.
    pub(crate) fn peer(&self) -> Option<PeerCredentials> {
        self.conn.peer
    }

    /// The connection, for its requests to learn whether they were cancelled.
    pub(crate) fn conn(&self) -> Arc<Conn> {
        Arc::clone(&self.conn)
    }

    /// Request `sequence` goes to the handler. Until [`InFlight::answered`], a hard
    /// stop or an overdue cut cancels it, and so does dropping the guard: the
    /// request then ended without its reply (deadline, failure, connection cut).
    pub(crate) fn in_flight(&self, sequence: u64) -> InFlight<'_> {
        self.conn.in_flight.store(sequence, Ordering::SeqCst);
        InFlight {
            conn: &self.conn,
            sequence,
        }
    }

    /// A request was answered; `bytes` of reply were written.
    pub(crate) fn answered(&self, bytes: u64) {
        if self.conn.unsettled.swap(false, Ordering::SeqCst) {
            add(&self.conn.figures.completed, 1);
        }
        add(&self.conn.figures.bytes_out, bytes);
    }

    /// The request in flight, if there is one, ended without a reply: counts it,
    /// once, as `how`.
    pub(crate) fn unanswered(&self, how: Unanswered) {
        if !self.conn.unsettled.swap(false, Ordering::SeqCst) {
            return;
        }
        let counters = &self.counters;
        add(
            match how {
                Unanswered::Failed => &counters.failed,
                Unanswered::TimedOut => &counters.requests_timed_out,
                Unanswered::Oversize => &counters.rejected_oversize,
            },
            1,
        );
    }

    /// The connection was closed by a deadline (see [`Stats::timed_out`]).
    pub(crate) fn timed_out(&self) {
        add(&self.counters.timed_out, 1);
    }
}

/// A request between its handler's start and its reply: see [`Tracked::in_flight`].
#[derive(Debug)]
pub(crate) struct InFlight<'a> {
    conn: &'a Conn,
    sequence: u64,
}

impl InFlight<'_> {
    /// The reply was written in full (or, on an inbound pipe, none was due).
    pub(crate) fn answered(self) {
        self.conn.in_flight.store(0, Ordering::SeqCst);
        std::mem::forget(self);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.conn.in_flight.store(0, Ordering::SeqCst);
        self.conn.cancels.cancel(self.sequence);
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // A request still in flight here was cut off without the connection's
        // code seeing its end: its task was aborted at the hard stop.
        self.unanswered(Unanswered::Failed);
        let mut connections = self.counters.connections();
        connections.remove(&self.id);
        // Under the lock: a snapshot sees these figures either live or folded.
        self.conn.figures.fold_into(&self.counters.closed);
    }
}
