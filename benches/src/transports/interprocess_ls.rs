//! `interprocess`: the `interprocess` crate's local sockets (file-path names,
//! i.e. Unix domain sockets on Unix), blocking and Tokio APIs.

use std::io;

use interprocess::local_socket::traits::tokio::{Listener as _, Stream as _};
use interprocess::local_socket::traits::{Listener as _, Stream as _};
use interprocess::local_socket::{
    tokio::Listener as TokioListener, tokio::Stream as TokioStream, GenericFilePath, Listener,
    ListenerOptions, Name, Stream, ToFsName,
};

use crate::transport::{AsyncFramed, AsyncTransport, BlockingTransport, Framed};

fn name(addr: &str) -> io::Result<Name<'_>> {
    addr.to_fs_name::<GenericFilePath>()
}

/// Blocking API (`interprocess::local_socket::{Listener, Stream}`).
#[derive(Debug)]
pub struct Interprocess;

impl BlockingTransport for Interprocess {
    type Listener = Listener;
    type Conn = Framed<Stream>;

    fn bind(addr: &str) -> io::Result<Self::Listener> {
        ListenerOptions::new().name(name(addr)?).create_sync()
    }
    fn accept(listener: &Self::Listener) -> io::Result<Self::Conn> {
        listener.accept().map(Framed::new)
    }
    fn connect(addr: &str) -> io::Result<Self::Conn> {
        Stream::connect(name(addr)?).map(Framed::new)
    }
}

/// Tokio API (`interprocess::local_socket::tokio::{Listener, Stream}`).
#[derive(Debug)]
pub struct InterprocessTokio;

impl AsyncTransport for InterprocessTokio {
    type Listener = TokioListener;
    type Conn = AsyncFramed<TokioStream>;

    fn bind(addr: &str) -> io::Result<Self::Listener> {
        ListenerOptions::new().name(name(addr)?).create_tokio()
    }
    async fn accept(listener: &mut Self::Listener) -> io::Result<Self::Conn> {
        listener.accept().await.map(AsyncFramed::new)
    }
    async fn connect(addr: &str) -> io::Result<Self::Conn> {
        TokioStream::connect(name(addr)?)
            .await
            .map(AsyncFramed::new)
    }
}
