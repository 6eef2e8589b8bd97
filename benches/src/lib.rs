//! Benchmark harness for npipe: every transport implements
//! [`transport::BlockingTransport`] or [`transport::AsyncTransport`] and is
//! listed in [`registry::entries`]; the harness runs each workload with the
//! server and the client(s) in separate processes.

// An internal harness (publish = false): its items are documented where the
// meaning is not obvious from the name; the workspace's `missing_docs` would
// only ask for comments restating field names.
#![allow(missing_docs)]

pub mod hist;
pub mod orchestrate;
pub mod registry;
pub mod report;
pub mod roles;
pub mod transport;
pub mod transports;
pub mod util;
pub mod workload;
