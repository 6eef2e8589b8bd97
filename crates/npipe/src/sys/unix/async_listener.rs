//! The async server end on Unix, under [`crate::tokio::Listener`]: the blocking
//! [`Listener`] (name ownership, access policy, instance gate) and the same
//! listening socket registered with tokio.

use std::io;

use super::async_io::ListeningSocket;
use super::async_stream::AsyncStream;
use super::listener::{is_transient_accept_error, Listener};
use super::stream::Stream;
use crate::name::PipeName;
use crate::options::ListenerOptions;

#[derive(Debug)]
pub(crate) struct AsyncListener {
    inner: Listener,
    /// The same listening socket (a duplicate descriptor) registered with tokio;
    /// `None` for a listener whose clients are taken by threads in a blocking
    /// `accept` ([`bind_blocking`](Self::bind_blocking)).
    socket: Option<ListeningSocket>,
}

/// An instance reserved in the gate for an `accept` in progress; given back if the
/// accept does not produce a connection (including when its future is dropped).
struct Reservation<'a> {
    listener: Option<&'a Listener>,
}

impl Reservation<'_> {
    fn consume(mut self) {
        self.listener = None;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Some(listener) = self.listener {
            listener.gate().unreserve();
        }
    }
}

impl AsyncListener {
    /// Creates the pipe and registers its socket with the current runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O enabled.
    pub(crate) fn bind(name: PipeName, options: &ListenerOptions) -> io::Result<AsyncListener> {
        AsyncListener::registered(Listener::create(name, options.clone())?)
    }

    /// Serves the listening socket a service manager passed for `name` (see
    /// `Listener::activated`) and registers it with the current runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O enabled.
    pub(crate) fn activated(
        name: PipeName,
        options: &ListenerOptions,
    ) -> io::Result<AsyncListener> {
        AsyncListener::registered(Listener::activated(name, options.clone())?)
    }

    /// `inner`, with its listening socket registered with the current runtime.
    fn registered(inner: Listener) -> io::Result<AsyncListener> {
        let socket = inner.socket().try_clone()?;
        socket.set_nonblocking(true)?;
        Ok(AsyncListener {
            socket: Some(ListeningSocket::from_std(socket)?),
            inner,
        })
    }

    /// A listener whose clients are taken by threads that call a blocking
    /// `accept` (the managed server's acceptors, Linux): its socket stays
    /// blocking and is not registered with tokio, whose reactor would otherwise
    /// wake up for every client for nothing. The async `accept` fails on it.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn bind_blocking(
        name: &PipeName,
        options: &ListenerOptions,
    ) -> io::Result<AsyncListener> {
        Ok(AsyncListener {
            inner: Listener::create(name.clone(), options.clone())?,
            socket: None,
        })
    }

    pub(crate) async fn accept(&self) -> io::Result<AsyncStream> {
        AsyncStream::from_sys(self.accept_sys(true).await?)
    }

    /// [`accept`](Self::accept), returning the connection before it is given to
    /// tokio: non-blocking, or blocking for a thread that will serve it (the
    /// managed server's sync handlers). Cancel safe, as `accept`.
    pub(crate) async fn accept_sys(&self, nonblocking: bool) -> io::Result<Stream> {
        let listener = &self.inner;
        let Some(socket) = &self.socket else {
            return Err(io::Error::other(
                "this listener's clients are accepted by blocking threads",
            ));
        };
        loop {
            listener.gate().reserve_async().await;
            let reservation = Reservation {
                listener: Some(listener),
            };
            let conn = loop {
                match socket.accept(nonblocking).await {
                    Ok(conn) => break conn,
                    Err(e) if is_transient_accept_error(&e) => continue,
                    Err(e) => return Err(e),
                }
            };
            // From here to the return there is no await: the future cannot be
            // dropped with a connection in hand.
            reservation.consume();
            if let Some(stream) = listener.finish_accept(conn)? {
                return Ok(stream);
            }
        }
    }

    /// Whether this listener's clients are taken by blocking `accept` calls
    /// ([`bind_blocking`](Self::bind_blocking)).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn accepts_blocking(&self) -> bool {
        self.socket.is_none()
    }

    /// The blocking listener: the pipe's name, options and counts, and for threads
    /// that accept with blocking calls.
    pub(crate) fn blocking(&self) -> &Listener {
        &self.inner
    }

    /// Wakes every thread blocked in a blocking `accept` on this listener (which
    /// then fails with `EINVAL`), and refuses new clients: Linux's
    /// `shutdown(SHUT_RD)` on a listening Unix socket.
    ///
    /// Not on a socket a service manager passed: the shutdown would stay with the
    /// socket, which the manager keeps for the next start (and no thread blocks in
    /// `accept` on it: such listeners are never `bind_blocking`).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn stop_accepting(&self) {
        use std::os::fd::AsRawFd;
        if self.inner.is_activated() {
            return;
        }
        let fd = self.inner.socket().as_raw_fd();
        let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Read);
    }
}
