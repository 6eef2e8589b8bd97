//! Benchmark harness for npipe: every transport implements
//! [`transport::BlockingTransport`] or [`transport::AsyncTransport`] and is
//! listed in [`registry::entries`]; the harness runs each workload with the
//! server and the client(s) in separate processes.

pub mod hist;
pub mod orchestrate;
pub mod registry;
pub mod report;
pub mod roles;
pub mod transport;
pub mod transports;
pub mod util;
pub mod workload;
