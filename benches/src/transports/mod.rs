//! Baseline transports. npipe's own implementations go next to these.

pub mod interprocess_ls;
pub mod raw;
pub mod tokio_uds;
