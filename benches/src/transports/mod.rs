//! The baseline transports (Unix only: Unix domain sockets) and npipe's own
//! (`npipe_impl`, on every OS).

#[cfg(unix)]
pub mod interprocess_ls;
pub mod npipe_impl;
#[cfg(unix)]
pub mod raw;
#[cfg(unix)]
pub mod tokio_uds;
