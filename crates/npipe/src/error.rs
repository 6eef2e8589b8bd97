//! The pipe-specific error type.
//!
//! npipe's transport functions return [`std::io::Result`], so they compose with
//! `?` in any I/O code. Conditions that `std::io::ErrorKind` cannot say precisely
//! (a busy pipe, an oversized message, a client refused by the access policy...)
//! travel inside the `io::Error` as an [`Error`]; [`ErrorKind::of`] recovers them.

use std::fmt;
use std::io;

/// What went wrong, in the terms of named pipes.
///
/// Obtain it from any `io::Error` returned by npipe with [`ErrorKind::of`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No server has created the pipe (`ERROR_FILE_NOT_FOUND`), or, on Unix, only a
    /// stale socket file of a server that is gone remains. Returned by connect after
    /// its timeout when the pipe never appeared.
    NotFound,
    /// The pipe exists but every instance is busy (`ERROR_PIPE_BUSY`): the client
    /// waited for its whole connect timeout and no instance became free.
    PipeBusy,
    /// Another live server already owns the name (`FILE_FLAG_FIRST_PIPE_INSTANCE`
    /// refused), or its files belong to another user.
    AddrInUse,
    /// The peer is not allowed by the access policy, or the operating system refused
    /// access to the pipe (`ERROR_ACCESS_DENIED`), or the server is not the user the
    /// client required.
    AccessDenied,
    /// A message was larger than the buffer given; the part that fit was returned and
    /// the rest follows (`ERROR_MORE_DATA`).
    MoreData,
    /// A message is larger than the configured maximum message size. On receive, the
    /// length was refused before any allocation and the connection can no longer be
    /// read (its framing is lost); on send, nothing was written.
    MessageTooLarge,
    /// A timeout expired (a read or write timeout, or a request deadline).
    Timeout,
    /// The other end closed the connection (`ERROR_BROKEN_PIPE`, `ERROR_NO_DATA`),
    /// possibly in the middle of a message.
    Disconnected,
    /// The pipe name is invalid; the message states the rule broken.
    InvalidName,
    /// The operation is not supported on this platform or for this pipe (remote pipes,
    /// writing on a read-only end, ...).
    Unsupported,
    /// Malformed data from the peer (a frame that breaks the wire contract).
    InvalidData,
    /// Any other I/O error; the `io::ErrorKind` and OS error code say more.
    Io,
}

impl ErrorKind {
    /// Classifies an `io::Error` returned by npipe (or by std on a pipe).
    ///
    /// An npipe [`Error`] inside the `io::Error` gives its own kind; otherwise the
    /// `io::ErrorKind` is mapped (`NotFound` → [`NotFound`](Self::NotFound),
    /// `BrokenPipe`/`ConnectionReset`/`UnexpectedEof` → [`Disconnected`](Self::Disconnected), ...).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use npipe::{ErrorKind, Stream};
    ///
    /// match Stream::connect("demo") {
    ///     Ok(_stream) => println!("connected"),
    ///     Err(e) if ErrorKind::of(&e) == ErrorKind::PipeBusy => println!("try later"),
    ///     Err(e) => eprintln!("{e}"),
    /// }
    /// ```
    pub fn of(error: &io::Error) -> ErrorKind {
        if let Some(inner) = error.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
            return inner.kind;
        }
        match error.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::AddrInUse => ErrorKind::AddrInUse,
            io::ErrorKind::PermissionDenied => ErrorKind::AccessDenied,
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ErrorKind::Timeout,
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
            | io::ErrorKind::UnexpectedEof => ErrorKind::Disconnected,
            io::ErrorKind::InvalidInput => ErrorKind::InvalidName,
            io::ErrorKind::InvalidData => ErrorKind::InvalidData,
            io::ErrorKind::Unsupported => ErrorKind::Unsupported,
            io::ErrorKind::ResourceBusy => ErrorKind::PipeBusy,
            _ => ErrorKind::Io,
        }
    }

    fn io_kind(self) -> io::ErrorKind {
        match self {
            ErrorKind::NotFound => io::ErrorKind::NotFound,
            ErrorKind::PipeBusy => io::ErrorKind::ResourceBusy,
            ErrorKind::AddrInUse => io::ErrorKind::AddrInUse,
            ErrorKind::AccessDenied => io::ErrorKind::PermissionDenied,
            ErrorKind::MoreData => io::ErrorKind::Other,
            ErrorKind::MessageTooLarge => io::ErrorKind::InvalidData,
            ErrorKind::Timeout => io::ErrorKind::TimedOut,
            ErrorKind::Disconnected => io::ErrorKind::BrokenPipe,
            ErrorKind::InvalidName => io::ErrorKind::InvalidInput,
            ErrorKind::Unsupported => io::ErrorKind::Unsupported,
            ErrorKind::InvalidData => io::ErrorKind::InvalidData,
            ErrorKind::Io => io::ErrorKind::Other,
        }
    }

    /// A short lowercase description, e.g. `"pipe busy"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "pipe not found",
            ErrorKind::PipeBusy => "pipe busy",
            ErrorKind::AddrInUse => "pipe name in use",
            ErrorKind::AccessDenied => "access denied",
            ErrorKind::MoreData => "more data",
            ErrorKind::MessageTooLarge => "message too large",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Disconnected => "disconnected",
            ErrorKind::InvalidName => "invalid pipe name",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::InvalidData => "invalid data",
            ErrorKind::Io => "i/o error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pipe error: an [`ErrorKind`], a message meant for people, and the OS error
/// that caused it, if any.
///
/// It converts into `io::Error` (which is what npipe's functions return); use
/// [`ErrorKind::of`] or [`Error::from_io`] to look inside again.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<io::Error>,
}

impl Error {
    /// Creates an error of `kind` with a message for people.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Creates an error of `kind` caused by the OS error `source`.
    pub fn with_source(kind: ErrorKind, message: impl Into<String>, source: io::Error) -> Error {
        Error {
            kind,
            message: message.into(),
            source: Some(source),
        }
    }

    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind or the source.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The npipe error inside an `io::Error`, if there is one.
    pub fn from_io(error: &io::Error) -> Option<&Error> {
        error.get_ref().and_then(|e| e.downcast_ref::<Error>())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for io::Error {
    fn from(error: Error) -> io::Error {
        let kind = match (&error.source, error.kind) {
            (Some(source), ErrorKind::Io) => source.kind(),
            (_, kind) => kind.io_kind(),
        };
        io::Error::new(kind, error)
    }
}

/// Shorthand used across the crate: an `io::Error` carrying an npipe [`Error`].
pub(crate) fn err(kind: ErrorKind, message: impl Into<String>) -> io::Error {
    Error::new(kind, message).into()
}

/// Same, with the OS error that caused it.
pub(crate) fn err_src(kind: ErrorKind, message: impl Into<String>, source: io::Error) -> io::Error {
    Error::with_source(kind, message, source).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_survives_io_error() {
        let e: io::Error = Error::new(ErrorKind::PipeBusy, "all instances busy").into();
        assert_eq!(ErrorKind::of(&e), ErrorKind::PipeBusy);
        assert_eq!(e.kind(), io::ErrorKind::ResourceBusy);
        assert_eq!(e.to_string(), "all instances busy");
    }

    #[test]
    fn plain_io_errors_are_classified() {
        let e = io::Error::from(io::ErrorKind::BrokenPipe);
        assert_eq!(ErrorKind::of(&e), ErrorKind::Disconnected);
        let e = io::Error::from(io::ErrorKind::NotFound);
        assert_eq!(ErrorKind::of(&e), ErrorKind::NotFound);
    }

    #[test]
    fn io_kind_keeps_the_source_kind() {
        let source = io::Error::from(io::ErrorKind::OutOfMemory);
        let e: io::Error = Error::with_source(ErrorKind::Io, "reading", source).into();
        assert_eq!(e.kind(), io::ErrorKind::OutOfMemory);
        assert!(e.to_string().starts_with("reading: "));
    }
}
