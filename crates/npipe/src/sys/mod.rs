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
//! - with the feature `tokio`, the async backend under `crate::tokio`, which
//!   defines the public types once over it:
//!   - `AsyncStream`: `connect(PipeName, &ConnectOptions)` (async), `mode`,
//!     `is_server`, `send` (async), `peek`, `peer_credentials`, `shutdown`,
//!     `into_split`, `start_framing` (the `MessageCodec` and bytes read ahead for
//!     `into_framed`), `wait_data` (async), and its joined halves `read_half`,
//!     `write_half`; `AsFd` (Unix) or `AsHandle` (Windows).
//!   - `AsyncReadHalf`: `mode`, `recv`, `recv_into` (async), `peer_credentials`,
//!     `poll_read` (the bytes of `AsyncRead`). `AsyncWriteHalf`: `mode`, `send`
//!     (async), `poll_write` (of a slice list), `poll_flush`, `poll_shutdown`;
//!     `WRITES_VECTORED` says whether a write takes several slices at once.
//!   - `AsyncListener`: `bind(PipeName, &ListenerOptions)`, `accept` (async, cancel
//!     safe), `blocking()` (the `Listener`: name, options, counts).
//! - `is_listening(&PipeName) -> io::Result<bool>`: whether a live server owns the
//!   name, without connecting where the OS allows (used by `wait`).
//! - the mapping of a `PipeName` to an `Address` (called by `PipeName::address`).
//! - socket activation: `Listener::activated` and `AsyncListener::activated` (a
//!   socket a service manager passed; on Windows, refused as `Unsupported`).
//!
//! Unix also provides, for the managed server's connections served on threads of
//! their own: `Stream::recv_reading` (a message received with every read of the
//! `Socket` timed by the caller: `recv_now`, `recv_waiting`, `recv_by`) and
//! `Reachable` (a stream whose `ShutdownHandle`s shut it down, or see its peer
//! hang up, from other threads); and for `inspect`, the lock file's `Record` and the facts
//! about processes and users (`process_name`, `process_uid`, `user_name`).
//! Unix also provides `is_activated`, of a socket a service manager passed.
//! Windows provides `pipe_names` for `list`.
//!
//! The OS backends depend only on the pure modules: `error`, `name`, `frame`,
//! `peer`, and the options as plain data.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;
