//! The two ends of a fresh connection: a pipe, a client connected to it, and the
//! server end its listener accepted.

use npipe::{ConnectOptions, Listener, ListenerOptions, Stream};

/// Pipe `name` with default options, connected: `(listener, client, server)`.
pub(crate) fn pair(name: &str) -> (Listener, Stream, Stream) {
    pair_with(name, &ListenerOptions::new(), &ConnectOptions::new())
}

/// Pipe `name` created with `listener`, a client connected with `client`, and the
/// server end accepted: `(listener, client, server)`.
pub(crate) fn pair_with(
    name: &str,
    listener: &ListenerOptions,
    client: &ConnectOptions,
) -> (Listener, Stream, Stream) {
    let listener = listener.create(name).expect("create the pipe");
    let client = client.connect(name).expect("connect");
    let server = listener.accept().expect("accept");
    (listener, client, server)
}

/// Accepts one client on `listener` in a thread of its own and hands it to `serve`.
pub(crate) fn serve_one<T: Send + 'static>(
    listener: Listener,
    serve: impl FnOnce(Stream) -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || serve(listener.accept().expect("accept")))
}

/// Pipe `name` with default options, connected through `npipe::tokio`:
/// `(listener, client, server)`.
#[cfg(feature = "tokio")]
pub(crate) async fn tokio_pair(
    name: &str,
) -> (
    npipe::tokio::Listener,
    npipe::tokio::Stream,
    npipe::tokio::Stream,
) {
    tokio_pair_with(name, &ListenerOptions::new(), &ConnectOptions::new()).await
}

/// [`pair_with`] through `npipe::tokio`: `(listener, client, server)`.
#[cfg(feature = "tokio")]
pub(crate) async fn tokio_pair_with(
    name: &str,
    listener: &ListenerOptions,
    client: &ConnectOptions,
) -> (
    npipe::tokio::Listener,
    npipe::tokio::Stream,
    npipe::tokio::Stream,
) {
    let listener = npipe::tokio::Listener::bind_with(name, listener).expect("create the pipe");
    let (client, server) = tokio::join!(
        npipe::tokio::Stream::connect_with(name, client),
        listener.accept()
    );
    (listener, client.expect("connect"), server.expect("accept"))
}
