//! Running a server on threads of its own, for programs that are not async.

use std::fmt;
use std::io;
use std::thread;

use super::{Server, ServerBuilder, ServerHandle, Stats};
use crate::name::{Address, PipeName};

/// A [`Server`] running on background threads with a tokio runtime of its own, from
/// [`ServerBuilder::spawn`].
///
/// Dropping it shuts the server down gracefully and waits for it, as
/// [`shutdown`](Self::shutdown) + [`join`](Self::join) do.
///
/// # Examples
///
/// A program that is not async serves until its user presses Enter:
///
/// ```no_run
/// use npipe::{Response, Server};
///
/// let server = Server::builder("demo")
///     .handler(|request| Response::new(request.into_body()))
///     .spawn()?;
/// println!("serving at {}; press Enter to stop", server.address());
/// std::io::stdin().read_line(&mut String::new())?;
/// server.shutdown();
/// server.join()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct SpawnedServer {
    handle: ServerHandle,
    name: PipeName,
    address: Address,
    thread: Option<thread::JoinHandle<io::Result<()>>>,
}

impl fmt::Debug for SpawnedServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpawnedServer")
            .field("name", &self.name)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

pub(super) fn spawn(builder: ServerBuilder) -> io::Result<SpawnedServer> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all().thread_name("npipe-server");
    if let Some(threads) = builder.worker_threads {
        runtime.worker_threads(threads);
    }
    let runtime = runtime.build()?;
    let server: Server = {
        let _context = runtime.enter();
        builder.bind()?
    };
    let handle = server.handle();
    let name = server.name().clone();
    let address = server.address().clone();
    let thread = thread::Builder::new()
        .name(format!("npipe-server {name}"))
        .spawn(move || {
            let result = runtime.block_on(server.run());
            // `run` has waited as long as the grace period allows. A sync handler
            // still running past it (threads cannot be stopped) must not hold up
            // `join`, as dropping the runtime would; anything else is done by now
            // and is released before `join` returns.
            runtime.shutdown_timeout(std::time::Duration::from_millis(100));
            result
        })?;
    Ok(SpawnedServer {
        handle,
        name,
        address,
        thread: Some(thread),
    })
}

impl SpawnedServer {
    /// Asks the server to shut down gracefully; returns at once. See [`Server`].
    ///
    /// # Examples
    ///
    /// See [`SpawnedServer`].
    pub fn shutdown(&self) {
        self.handle.shutdown();
    }

    /// Waits until the server has stopped (after [`shutdown`](Self::shutdown), or
    /// forever).
    ///
    /// # Errors
    ///
    /// What [`Server::run`] returned; `Other` if the server thread panicked.
    ///
    /// # Examples
    ///
    /// A server stopped by a handler, then waited for:
    ///
    /// ```no_run
    /// use std::sync::{Arc, OnceLock};
    /// use npipe::{Response, Server, ServerHandle};
    ///
    /// let handle = Arc::new(OnceLock::<ServerHandle>::new());
    /// let handler_handle = Arc::clone(&handle);
    /// let server = Server::builder("demo")
    ///     .handler(move |request| {
    ///         if request.body() == b"quit" {
    ///             if let Some(handle) = handler_handle.get() {
    ///                 handle.shutdown();
    ///             }
    ///         }
    ///         Response::from("ok")
    ///     })
    ///     .spawn()?;
    /// let _ = handle.set(server.handle());
    /// server.join()?; // returns after a client sent "quit"
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn join(mut self) -> io::Result<()> {
        self.wait()
    }

    fn wait(&mut self) -> io::Result<()> {
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the server thread panicked"))),
            None => Ok(()),
        }
    }

    /// The stats now.
    pub fn stats(&self) -> Stats {
        self.handle.stats()
    }

    /// A handle that can ask for shutdown and read stats from other threads.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// The pipe's name.
    pub fn name(&self) -> &PipeName {
        &self.name
    }

    /// Where the pipe lives in the OS.
    pub fn address(&self) -> &Address {
        &self.address
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.handle.shutdown();
            let _ = self.wait();
        }
    }
}
