//! The async server end on Windows, under [`crate::tokio::Listener`]: the blocking
//! listener's pool of instances, each with a thread waiting in `ConnectNamedPipe`,
//! hands connected instances to `accept`.

use std::future::poll_fn;
use std::io;

use super::async_stream::AsyncStream;
use super::listener::Listener;
use super::stream::EndState;
use crate::name::PipeName;
use crate::options::ListenerOptions;

#[derive(Debug)]
pub(crate) struct AsyncListener {
    inner: Listener,
}

impl AsyncListener {
    pub(crate) fn bind(name: PipeName, options: &ListenerOptions) -> io::Result<AsyncListener> {
        let inner = Listener::create(name, options.clone())?;
        Ok(AsyncListener { inner })
    }

    /// Refused, as `Listener::activated`.
    pub(crate) fn activated(
        name: PipeName,
        options: &ListenerOptions,
    ) -> io::Result<AsyncListener> {
        Listener::activated(name, options.clone()).map(|inner| AsyncListener { inner })
    }

    /// Waits for a connected instance. Cancel safe: an instance is taken from the
    /// pool only by the final, synchronous step.
    pub(crate) async fn accept(&self) -> io::Result<AsyncStream> {
        let (pipe, slot) = poll_fn(|cx| self.inner.poll_accept(cx)).await?;
        let opts = self.inner.options();
        let state = EndState::server(opts.direction);
        AsyncStream::new(pipe, opts.mode, opts.max_message_size, state, Some(slot))
    }

    /// The blocking listener: the pipe's name, options and counts.
    pub(crate) fn blocking(&self) -> &Listener {
        &self.inner
    }
}
