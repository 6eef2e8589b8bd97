//! Benchmark harness for npipe: every transport implements
//! [`transport::BlockingTransport`] or [`transport::AsyncTransport`] and is
//! listed in [`registry::entries`]; the harness runs each workload with the
//! server and the client(s) in separate processes.
//!
//! The one benchmark engine of the workspace: the `npipe-bench` binary and
//! `npipe bench` are both front ends of this library ([`command`] is the
//! harness's command line, [`roles::Role`] the hidden commands of the child
//! processes), which also holds the latency statistics ([`hist`]), the child
//! processes ([`child`]) and the duration and size formats ([`units`]) that the
//! `npipe` command line uses.

// An internal harness (publish = false): its items are documented where the
// meaning is not obvious from the name; the workspace's `missing_docs` would
// only ask for comments restating field names.
#![allow(missing_docs)]

pub mod child;
pub mod command;
pub mod hist;
pub mod orchestrate;
pub mod registry;
pub mod report;
pub mod roles;
pub mod transport;
pub mod transports;
pub mod units;
pub mod util;
pub mod workload;
