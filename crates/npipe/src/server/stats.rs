//! What a running server has done and what each instance is doing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::stream::PeerCredentials;

/// A snapshot of a server's counters and instances, from
/// [`ServerHandle::stats`](super::ServerHandle::stats).
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted (admitted by the access policy).
    pub accepted: u64,
    /// Connections open now.
    pub active: u64,
    /// Requests answered (the reply was written in full).
    pub completed: u64,
    /// Requests whose handler panicked; their connections were closed without a reply.
    pub failed: u64,
    /// Times every instance was connected (`max_instances` reached), so that new
    /// clients had to wait for one to be released. On Unix a waiting client is
    /// invisible to the server: whether it then gave up with `PipeBusy` after its
    /// connect timeout is known only to the client.
    pub rejected_busy: u64,
    /// Clients refused by the access policy (never reached the handler).
    pub rejected_access: u64,
    /// Connections closed because the client announced a message over the maximum
    /// message size (nothing was allocated for it).
    pub rejected_oversize: u64,
    /// Connections closed because the idle timeout or the request deadline expired.
    pub timed_out: u64,
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

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) rejected_busy: AtomicU64,
    pub(crate) rejected_oversize: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    connections: Mutex<BTreeMap<u64, Entry>>,
}

#[derive(Debug)]
struct Entry {
    state: InstanceState,
    peer: Option<PeerCredentials>,
    requests: u64,
    since: Instant,
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    fn connections(&self) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
        // Plain data behind the lock: a panic elsewhere cannot break it.
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection; it is unregistered when the guard drops.
    pub(crate) fn open(self: &Arc<Self>, id: u64, peer: Option<PeerCredentials>) -> Tracked {
        add(&self.accepted, 1);
        self.connections().insert(
            id,
            Entry {
                state: InstanceState::Reading,
                peer,
                requests: 0,
                since: Instant::now(),
            },
        );
        Tracked {
            counters: Arc::clone(self),
            id,
        }
    }

    pub(crate) fn snapshot(&self, listening: u32, rejected_access: u64) -> Stats {
        let now = Instant::now();
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
        instances.extend(connections.iter().map(|(id, e)| InstanceStatus {
            state: e.state,
            connection: Some(*id),
            peer: e.peer,
            requests: e.requests,
            since: now.saturating_duration_since(e.since),
        }));
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            accepted: get(&self.accepted),
            active: connections.len() as u64,
            completed: get(&self.completed),
            failed: get(&self.failed),
            rejected_busy: get(&self.rejected_busy),
            rejected_access,
            rejected_oversize: get(&self.rejected_oversize),
            timed_out: get(&self.timed_out),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
            instances,
        }
    }
}

/// A connection's entry in the stats; removed when dropped.
#[derive(Debug)]
pub(crate) struct Tracked {
    counters: Arc<Counters>,
    id: u64,
}

impl Tracked {
    pub(crate) fn set(&self, state: InstanceState) {
        if let Some(e) = self.counters.connections().get_mut(&self.id) {
            e.state = state;
            e.since = Instant::now();
        }
    }

    pub(crate) fn answered(&self) {
        add(&self.counters.completed, 1);
        if let Some(e) = self.counters.connections().get_mut(&self.id) {
            e.requests += 1;
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.counters.connections().remove(&self.id);
    }
}
