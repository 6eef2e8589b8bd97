//! The record a server keeps in its lock file: `pid=.. mode=.. direction=..
//! access=..`. Written by the listener that holds the lock; read by `inspect`,
//! and by a second server that finds the name taken (to say whose it is).

use std::fmt;

use crate::options::{Access, Direction, ListenerOptions, Mode};

/// What a lock file says about the server that holds it; a field the text does
/// not give (or gives in a form npipe does not know) is `None`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) pid: Option<u32>,
    pub(crate) mode: Option<Mode>,
    pub(crate) direction: Option<Direction>,
    pub(crate) access: Option<Access>,
}

impl Record {
    /// The record of this process serving a pipe with `opts`.
    pub(crate) fn serving(opts: &ListenerOptions) -> Record {
        Record {
            pid: Some(std::process::id()),
            mode: Some(opts.mode),
            direction: Some(opts.direction),
            access: Some(opts.access),
        }
    }

    /// Reads a record; unknown fields and malformed values are passed over.
    pub(crate) fn parse(text: &str) -> Record {
        let mut record = Record::default();
        for (key, value) in text.split_whitespace().filter_map(|f| f.split_once('=')) {
            match key {
                "pid" => record.pid = value.parse().ok(),
                "mode" => record.mode = Mode::from_name(value),
                "direction" => record.direction = Direction::from_name(value),
                "access" => record.access = Access::from_name(value),
                _ => {}
            }
        }
        record
    }
}

/// The record as a line, as [`Record::parse`] reads it.
impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields = [
            ("pid", self.pid.map(|pid| pid.to_string())),
            ("mode", self.mode.map(|m| m.as_str().to_owned())),
            ("direction", self.direction.map(|d| d.as_str().to_owned())),
            ("access", self.access.map(|a| a.as_str().to_owned())),
        ];
        let mut sep = "";
        for (key, value) in fields {
            if let Some(value) = value {
                write!(f, "{sep}{key}={value}")?;
                sep = " ";
            }
        }
        writeln!(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_fields_are_read() {
        let record = Record::parse("pid=42 mode=byte direction=inbound access=group\n");
        assert_eq!(record.pid, Some(42));
        assert_eq!(record.mode, Some(Mode::Byte));
        assert_eq!(record.direction, Some(Direction::Inbound));
        assert_eq!(record.access, Some(Access::Group));
        assert_eq!(Record::parse("").pid, None);
        assert_eq!(Record::parse("pid").pid, None);
        assert_eq!(Record::parse("mode=weird").mode, None);
    }

    #[test]
    fn a_written_record_reads_back() {
        let mut opts = ListenerOptions::new();
        opts.mode(Mode::Byte).access(Access::Everyone);
        let record = Record::serving(&opts);
        let line = record.to_string();
        assert_eq!(
            line,
            format!(
                "pid={} mode=byte direction=duplex access=everyone\n",
                std::process::id()
            )
        );
        assert_eq!(Record::parse(&line), record);
    }
}
