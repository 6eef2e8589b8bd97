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
///
/// # Examples
///
/// ```
/// use std::io;
/// use npipe::{Error, ErrorKind};
///
/// fn advice(error: &io::Error) -> &'static str {
///     match ErrorKind::of(error) {
///         ErrorKind::NotFound => "no server has created the pipe: start it first",
///         ErrorKind::PipeBusy => "every instance is busy: try again later",
///         ErrorKind::AccessDenied => "the server does not admit this user",
///         // The enum is non-exhaustive: new conditions may be added.
///         _ => "see the error message",
///     }
/// }
///
/// let busy: io::Error = Error::new(ErrorKind::PipeBusy, "all instances busy").into();
/// assert_eq!(advice(&busy), "every instance is busy: try again later");
/// ```
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
    /// client required. On Unix a client refused by the server's check of its
    /// credentials after connecting learns it from the server's refusal notice
    /// ([`REFUSAL_NOTICE`](crate::REFUSAL_NOTICE)).
    AccessDenied,
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
    /// Any other I/O error, including invalid arguments such as a zero timeout
    /// (`io::ErrorKind::InvalidInput`); the `io::ErrorKind` and OS error code say more.
    Io,
}

impl ErrorKind {
    /// Classifies an `io::Error` returned by npipe (or by std on a pipe).
    ///
    /// An npipe [`Error`] inside the `io::Error` gives its own kind; otherwise the
    /// `io::ErrorKind` is mapped (`NotFound` → [`NotFound`](Self::NotFound),
    /// `BrokenPipe`/`ConnectionReset`/`UnexpectedEof` → [`Disconnected`](Self::Disconnected), ...).
    /// An `InvalidInput` from the OS or std (a zero timeout, an `ftruncate` the file
    /// does not support) is [`Io`](Self::Io): only npipe's own checks of a pipe name
    /// say [`InvalidName`](Self::InvalidName), and they carry it inside the error.
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
    ///
    /// # Examples
    ///
    /// ```
    /// use npipe::ErrorKind;
    ///
    /// assert_eq!(ErrorKind::PipeBusy.as_str(), "pipe busy");
    /// assert_eq!(ErrorKind::PipeBusy.to_string(), "pipe busy");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "pipe not found",
            ErrorKind::PipeBusy => "pipe busy",
            ErrorKind::AddrInUse => "pipe name in use",
            ErrorKind::AccessDenied => "access denied",
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
///
/// Its `Display` is the whole story, the OS error included ("cannot create the
/// socket /tmp/npipe-x: Permission denied (os error 13)"), and
/// [`source`](std::error::Error::source) is therefore `None`: a report that walks
/// the chain of sources (`anyhow`'s `{:#}`) names the OS error once, as does a
/// plain `{}`. The OS error itself is [`io_error`](Self::io_error).
///
/// # Examples
///
/// An application that reports a condition of its own in npipe's terms, through
/// `io::Result` like npipe's functions:
///
/// ```
/// use std::io;
/// use npipe::{Error, ErrorKind};
///
/// fn check_size(len: usize) -> io::Result<()> {
///     if len > 1024 {
///         let message = format!("a {len}-byte request is over this service's 1 KiB");
///         return Err(Error::new(ErrorKind::MessageTooLarge, message).into());
///     }
///     Ok(())
/// }
///
/// let e = check_size(4096).unwrap_err();
/// assert_eq!(ErrorKind::of(&e), ErrorKind::MessageTooLarge);
/// assert_eq!(e.kind(), io::ErrorKind::InvalidData);
/// let inner = Error::from_io(&e).expect("an npipe error inside");
/// assert_eq!(inner.message(), "a 4096-byte request is over this service's 1 KiB");
/// ```
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

    /// Creates an error of `kind` caused by the OS error `source`, which its
    /// `Display` appends to `message`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io;
    /// use npipe::{Error, ErrorKind};
    ///
    /// let os = io::Error::from(io::ErrorKind::PermissionDenied);
    /// let e = Error::with_source(ErrorKind::AccessDenied, "cannot open the spool", os);
    /// assert!(e.to_string().starts_with("cannot open the spool: "));
    /// assert_eq!(e.io_error().map(io::Error::kind), Some(io::ErrorKind::PermissionDenied));
    /// ```
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

    /// The OS (or std) error that caused this one, if any. It is part of the
    /// `Display` text and not a [`source`](std::error::Error::source), so that
    /// error reports print it once.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// if let Err(e) = npipe::Listener::bind("demo") {
    ///     // The OS error code, where an OS call failed.
    ///     let os = npipe::Error::from_io(&e).and_then(|e| e.io_error());
    ///     eprintln!("{e} (OS error {:?})", os.and_then(|os| os.raw_os_error()));
    /// }
    /// ```
    pub fn io_error(&self) -> Option<&io::Error> {
        self.source.as_ref()
    }

    /// The npipe error inside an `io::Error`, if there is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io;
    /// use npipe::{Error, ErrorKind};
    ///
    /// let e: io::Error = Error::new(ErrorKind::Timeout, "no reply within 2 s").into();
    /// assert_eq!(Error::from_io(&e).map(Error::kind), Some(ErrorKind::Timeout));
    /// // An error that did not come from npipe has none.
    /// assert!(Error::from_io(&io::Error::other("elsewhere")).is_none());
    /// ```
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

/// No `source`: the OS error is part of `Display` (see [`Error`]).
impl std::error::Error for Error {}

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

/// The error for using an end of a one-way pipe the way it cannot go: reading on an
/// end that only writes (`writing == false`) or writing on one that only reads. A
/// server end that cannot write, or a client end that cannot read, belongs to an
/// inbound pipe; the other two to an outbound one.
pub(crate) fn one_way_error(is_server: bool, writing: bool) -> io::Error {
    err(
        ErrorKind::Unsupported,
        format!(
            "this end of the pipe is {} (the {} end of an {} pipe)",
            if writing { "read-only" } else { "write-only" },
            if is_server { "server" } else { "client" },
            if is_server == writing {
                "inbound"
            } else {
                "outbound"
            }
        ),
    )
}

/// A wait, as error messages tell it: `250 ms`, `2.5 s`.
pub(crate) fn fmt_duration(d: std::time::Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
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
    fn invalid_input_from_the_os_is_not_an_invalid_name() {
        // What std says for a zero timeout, and Linux for ftruncate on a fifo.
        let zero = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .set_read_timeout(Some(std::time::Duration::ZERO))
            .unwrap_err();
        assert_eq!(zero.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(ErrorKind::of(&zero), ErrorKind::Io);
        let einval = io::Error::from_raw_os_error(22);
        assert_eq!(ErrorKind::of(&einval), ErrorKind::Io);
        // npipe's own name errors keep their kind.
        let name: io::Error = Error::new(ErrorKind::InvalidName, "bad").into();
        assert_eq!(ErrorKind::of(&name), ErrorKind::InvalidName);
        assert_eq!(name.kind(), io::ErrorKind::InvalidInput);
    }

    /// What `anyhow`'s `{:#}` prints: each error of the chain of sources.
    fn report(e: &(dyn std::error::Error + 'static)) -> String {
        let mut out = e.to_string();
        let mut next = e.source();
        while let Some(cause) = next {
            out.push_str(": ");
            out.push_str(&cause.to_string());
            next = cause.source();
        }
        out
    }

    #[test]
    fn the_os_error_is_named_once() {
        let os = io::Error::from_raw_os_error(13);
        let os_text = os.to_string();
        let e: io::Error =
            Error::with_source(ErrorKind::AccessDenied, "cannot create the socket /x", os).into();
        for text in [e.to_string(), report(&e)] {
            assert_eq!(text.matches(&os_text).count(), 1, "{text}");
            assert!(text.starts_with("cannot create the socket /x: "), "{text}");
        }
        let inner = Error::from_io(&e).unwrap();
        assert_eq!(inner.io_error().unwrap().raw_os_error(), Some(13));
        assert_eq!(report(inner).matches(&os_text).count(), 1);
    }

    #[test]
    fn io_kind_keeps_the_source_kind() {
        let source = io::Error::from(io::ErrorKind::OutOfMemory);
        let e: io::Error = Error::with_source(ErrorKind::Io, "reading", source).into();
        assert_eq!(e.kind(), io::ErrorKind::OutOfMemory);
        assert!(e.to_string().starts_with("reading: "));
    }
}
