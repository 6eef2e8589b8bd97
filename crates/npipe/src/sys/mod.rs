//! Operating-system backends. The only place with `unsafe` code.
//!
//! Every platform module provides, with the same names and semantics:
//!
//! - `Listener`: `create(PipeName, ListenerOptions) -> io::Result<Listener>`,
//!   `accept(&self) -> io::Result<Stream>`, `address()`, `instances()`, `denied()`;
//!   dropping it removes the pipe from the namespace.
//! - `Stream`: `connect(&PipeName, &ConnectOptions)`, `send`, `recv`, `recv_into`,
//!   `peek`, `read`, `write`, `shutdown`, `set_read_timeout`, `set_write_timeout`,
//!   `set_deadline` (one deadline for every system call of an operation, not a
//!   timeout per call), `peer_credentials`, `mode`, `is_server`.
//! - `is_listening(&PipeName) -> io::Result<bool>`: whether a live server owns the
//!   name, without connecting where the OS allows (used by `wait`).
//! - the mapping of a `PipeName` to an `Address` (called by `PipeName::address`).

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;
