//! The list of benchmarked transports ("rows"). Adding a transport = one line
//! in [`entries`].

use anyhow::Result;

use crate::roles::{self, ClientReport, Flavor, ServerModel};
use crate::transport::{AsyncTransport, BlockingTransport};
use crate::transports::npipe_impl::{
    self, ManagedHandler, NpipeBlocking, NpipeBytes, NpipeDeepQueue, NpipeTokio, NpipeTokioBytes,
};
#[cfg(unix)]
use crate::transports::{interprocess_ls, raw, tokio_uds};
use crate::workload::Workload;

type ServerFn = fn(&str, &Workload, Kind) -> Result<()>;
type ClientFn = fn(&str, &Workload, Kind) -> Result<ClientReport>;

/// How an entry runs: a blocking transport with a server model, or an async
/// transport on a Tokio runtime flavour (same flavour in server and clients).
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Blocking(ServerModel),
    Tokio(Flavor),
    /// `npipe::Server` in the server process; the blocking client of the
    /// entry's transport.
    Managed(ManagedHandler),
    /// An async server with blocking clients: the baseline of the async
    /// managed-server row, whose clients are blocking.
    TokioServerOnly(Flavor),
}

#[derive(Debug)]
pub struct Entry {
    pub name: &'static str,
    pub kind: Kind,
    server: ServerFn,
    client: ClientFn,
}

impl Entry {
    pub fn blocking<T: BlockingTransport>(name: &'static str, model: ServerModel) -> Self {
        fn server<T: BlockingTransport>(a: &str, w: &Workload, k: Kind) -> Result<()> {
            let Kind::Blocking(m) = k else { unreachable!() };
            roles::server_blocking::<T>(a, w, m)
        }
        fn client<T: BlockingTransport>(a: &str, w: &Workload, _: Kind) -> Result<ClientReport> {
            roles::client_blocking::<T>(a, w)
        }
        Entry {
            name,
            kind: Kind::Blocking(model),
            server: server::<T>,
            client: client::<T>,
        }
    }

    pub fn tokio<T: AsyncTransport>(name: &'static str, flavor: Flavor) -> Self {
        fn server<T: AsyncTransport>(a: &str, w: &Workload, k: Kind) -> Result<()> {
            let Kind::Tokio(f) = k else { unreachable!() };
            roles::server_async::<T>(a, w, f)
        }
        fn client<T: AsyncTransport>(a: &str, w: &Workload, k: Kind) -> Result<ClientReport> {
            let Kind::Tokio(f) = k else { unreachable!() };
            roles::client_async::<T>(a, w, f)
        }
        Entry {
            name,
            kind: Kind::Tokio(flavor),
            server: server::<T>,
            client: client::<T>,
        }
    }

    /// The managed `npipe::Server` in the server process, driven by the
    /// blocking clients of `T`.
    pub fn managed<T: BlockingTransport>(name: &'static str, handler: ManagedHandler) -> Self {
        fn server(a: &str, w: &Workload, k: Kind) -> Result<()> {
            let Kind::Managed(h) = k else { unreachable!() };
            npipe_impl::server_managed(a, w, h)
        }
        fn client<T: BlockingTransport>(a: &str, w: &Workload, _: Kind) -> Result<ClientReport> {
            roles::client_blocking::<T>(a, w)
        }
        Entry {
            name,
            kind: Kind::Managed(handler),
            server,
            client: client::<T>,
        }
    }

    /// A task-per-connection tokio server of `S`, driven by blocking clients of
    /// `C` (the same clients as the managed-server rows).
    pub fn tokio_server<S: AsyncTransport, C: BlockingTransport>(
        name: &'static str,
        flavor: Flavor,
    ) -> Self {
        fn server<S: AsyncTransport>(a: &str, w: &Workload, k: Kind) -> Result<()> {
            let Kind::TokioServerOnly(f) = k else {
                unreachable!()
            };
            roles::server_async::<S>(a, w, f)
        }
        fn client<C: BlockingTransport>(a: &str, w: &Workload, _: Kind) -> Result<ClientReport> {
            roles::client_blocking::<C>(a, w)
        }
        Entry {
            name,
            kind: Kind::TokioServerOnly(flavor),
            server: server::<S>,
            client: client::<C>,
        }
    }

    pub fn supports(&self, w: &Workload) -> bool {
        if self.name.ends_with("-q64") {
            // The default queue's cost shows with many clients at once.
            return matches!(w, Workload::ConnRate { clients, .. } if *clients > 1);
        }
        if self.name.ends_with("-bytes") {
            // Byte mode: the latency and throughput rows (the others would
            // measure the same connection handling as the message-mode rows).
            return matches!(w, Workload::Latency { .. } | Workload::Throughput { .. });
        }
        match self.kind {
            // One connection at a time: a pool serves it exactly as the
            // iterative server does, so the pools run the connection rows only.
            Kind::Blocking(ServerModel::Pool(_)) => matches!(w, Workload::ConnRate { .. }),
            Kind::Managed(_) | Kind::TokioServerOnly(_) => {
                matches!(w, Workload::ConnRate { .. } | Workload::ReqResp { .. })
            }
            _ => true,
        }
    }

    /// Server model actually used for `w` (for the report notes).
    pub fn describe(&self, w: &Workload) -> String {
        match self.kind {
            Kind::Blocking(ServerModel::Iterative) if w.needs_concurrency() => {
                "blocking, thread-per-connection server".into()
            }
            Kind::Blocking(ServerModel::Iterative) => "blocking, iterative server".into(),
            Kind::Blocking(ServerModel::Pool(n)) => format!("blocking, {n} accepting threads"),
            Kind::Blocking(ServerModel::ThreadPerConn) => {
                "blocking, thread-per-connection server".into()
            }
            Kind::Tokio(Flavor::CurrentThread) => {
                "tokio current_thread, task per connection".into()
            }
            Kind::Tokio(Flavor::MultiThread) => "tokio multi_thread, task per connection".into(),
            Kind::Managed(ManagedHandler::Sync) => {
                "npipe::Server (spawn), sync handler (threads that accept and serve)".into()
            }
            Kind::Managed(ManagedHandler::Async) => "npipe::Server (spawn), async handler".into(),
            Kind::TokioServerOnly(Flavor::CurrentThread) => {
                "tokio current_thread server, task per connection; blocking clients".into()
            }
            Kind::TokioServerOnly(Flavor::MultiThread) => {
                "tokio multi_thread server, task per connection; blocking clients".into()
            }
        }
    }

    pub fn run_server(&self, addr: &str, w: &Workload) -> Result<()> {
        (self.server)(addr, w, self.kind)
    }

    pub fn run_client(&self, addr: &str, w: &Workload) -> Result<ClientReport> {
        (self.client)(addr, w, self.kind)
    }
}

/// Every transport row, baseline (`raw`) first. The ratio column divides by
/// the `raw` row of the same workload and placement. The baselines are Unix
/// domain sockets: elsewhere only npipe's rows run.
pub fn entries() -> Vec<Entry> {
    let mut entries = Vec::new();
    #[cfg(unix)]
    entries.extend([
        Entry::blocking::<raw::RawUds>("raw", ServerModel::Iterative),
        Entry::blocking::<raw::RawUds>("raw-pool4", ServerModel::Pool(4)),
        Entry::blocking::<interprocess_ls::Interprocess>("interprocess", ServerModel::Iterative),
        Entry::tokio::<interprocess_ls::InterprocessTokio>(
            "interprocess-tokio",
            Flavor::CurrentThread,
        ),
        Entry::tokio::<tokio_uds::TokioUds>("tokio-ct", Flavor::CurrentThread),
        Entry::tokio::<tokio_uds::TokioUds>("tokio-mt", Flavor::MultiThread),
    ]);
    entries.extend([
        Entry::blocking::<NpipeBlocking>("npipe", ServerModel::Iterative),
        Entry::blocking::<NpipeBlocking>("npipe-pool4", ServerModel::Pool(4)),
        Entry::blocking::<NpipeDeepQueue>("npipe-pool4-q64", ServerModel::Pool(4)),
        Entry::tokio::<NpipeTokio>("npipe-tokio-ct", Flavor::CurrentThread),
        Entry::tokio::<NpipeTokio>("npipe-tokio-mt", Flavor::MultiThread),
        Entry::blocking::<NpipeBytes>("npipe-bytes", ServerModel::Iterative),
        Entry::tokio::<NpipeTokioBytes>("npipe-tokio-ct-bytes", Flavor::CurrentThread),
        Entry::managed::<NpipeBlocking>("npipe-server", ManagedHandler::Sync),
        Entry::managed::<NpipeBlocking>("npipe-server-async", ManagedHandler::Async),
        Entry::tokio_server::<NpipeTokio, NpipeBlocking>("npipe-tokio-mt-srv", Flavor::MultiThread),
    ]);
    entries
}

pub const BASELINE: &str = "raw";
/// The second baseline of the `connrate` rows.
pub const POOL_BASELINE: &str = "raw-pool4";

pub fn find(name: &str) -> Option<Entry> {
    entries().into_iter().find(|e| e.name == name)
}
