//! `raw`: hand-written Unix domain sockets using only `std::os::unix::net`,
//! framing done by hand (see [`crate::transport::Framed`]).

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};

use crate::transport::{BlockingTransport, Framed};

#[derive(Debug)]
pub struct RawUds;

impl BlockingTransport for RawUds {
    type Listener = UnixListener;
    type Conn = Framed<UnixStream>;

    fn bind(addr: &str) -> io::Result<UnixListener> {
        UnixListener::bind(addr)
    }
    fn accept(listener: &UnixListener) -> io::Result<Self::Conn> {
        listener.accept().map(|(s, _)| Framed::new(s))
    }
    fn connect(addr: &str) -> io::Result<Self::Conn> {
        UnixStream::connect(addr).map(Framed::new)
    }
}
