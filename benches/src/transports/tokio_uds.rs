//! `tokio-*`: `tokio::net::UnixStream` with the shared async framing.

use std::io;

use tokio::net::{UnixListener, UnixStream};

use crate::transport::{AsyncFramed, AsyncTransport};

#[derive(Debug)]
pub struct TokioUds;

impl AsyncTransport for TokioUds {
    type Listener = UnixListener;
    type Conn = AsyncFramed<UnixStream>;

    fn bind(addr: &str) -> io::Result<UnixListener> {
        UnixListener::bind(addr)
    }
    async fn accept(listener: &mut UnixListener) -> io::Result<Self::Conn> {
        listener.accept().await.map(|(s, _)| AsyncFramed::new(s))
    }
    async fn connect(addr: &str) -> io::Result<Self::Conn> {
        UnixStream::connect(addr).await.map(AsyncFramed::new)
    }
}
