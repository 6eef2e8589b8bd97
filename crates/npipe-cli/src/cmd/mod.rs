//! One module per verb: its `Args` (clap) and `run`.

pub(crate) mod bench;
pub(crate) mod call;
pub(crate) mod completions;
pub(crate) mod demo;
pub(crate) mod info;
pub(crate) mod list;
pub(crate) mod listen;
pub(crate) mod send;
pub(crate) mod serve;
pub(crate) mod wait;

use std::io::{self, Write};

use crate::exit::stdout_error;

/// Writes `bytes` to stdout and flushes; a closed stdout ends the program quietly.
pub(crate) fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes).map_err(stdout_error)?;
    out.flush().map_err(stdout_error)
}

/// Prints `value` as pretty JSON and a newline.
pub(crate) fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_stdout(text.as_bytes())
}
