//! The baseline transports and npipe's own (`npipe_impl`).

pub mod interprocess_ls;
pub mod npipe_impl;
pub mod raw;
pub mod tokio_uds;
