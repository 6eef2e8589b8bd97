//! Pipe names: parsing, validation, and the mapping to an OS address.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{err, ErrorKind};

/// Longest pipe name accepted, in bytes (Windows allows 256 characters for the whole
/// `\\.\pipe\NAME`; npipe applies the same limit to `NAME` on every OS).
pub const MAX_NAME_LEN: usize = 247;

/// A validated pipe name.
///
/// Accepted forms:
///
/// | written as | meaning |
/// |---|---|
/// | `NAME` | a pipe on this machine |
/// | `\\.\pipe\NAME` (or `//./pipe/NAME`) | the same pipe, in Windows syntax |
/// | `\\HOST\pipe\NAME` | pipe `NAME` on machine `HOST` (clients only): on Windows a native SMB pipe; on Unix reached through the system's ssh client and `npipe bridge` on HOST (see [`ConnectOptions::connect`](crate::ConnectOptions::connect)) |
/// | `@NAME` | Linux only: a socket in the abstract namespace (no file on disk) |
/// | `/DIR/FILE` | Unix only: the socket file at that absolute path (`/run/app/api.sock`) |
///
/// `NAME` is 1 to 247 bytes of printable characters with no `/` or `\`, does not
/// start with `.`, and is neither `.` nor `..`. Printable excludes control
/// characters and the characters that print as nothing or change how the text
/// around them prints (format characters such as zero-width spaces and
/// bidirectional overrides, line and paragraph separators), so that no name can
/// look like another one in a listing.
///
/// An explicit socket path (`/run/app/api.sock`) is at most 247 bytes of the same
/// printable characters, without `\`; it is absolute (a name that does not start
/// with `/` may not contain one), has no `.`, `..` or empty components and no
/// trailing `/`, and its file name does not start with `.` (npipe keeps the lock
/// and record files beside it as `.FILE.lock` and `.FILE.info`). Its directory is
/// checked and held as `$NPIPE_DIR` is (see [`PipeName::address`]).
///
/// Where a name lives on each OS is [`PipeName::address`]; `npipe info NAME` prints it.
///
/// # Examples
///
/// ```
/// use npipe::PipeName;
///
/// let a: PipeName = "orders".parse()?;
/// let b: PipeName = r"\\.\pipe\orders".parse()?;
/// assert_eq!(a, b);
/// assert!("bad/name".parse::<PipeName>().is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PipeName {
    kind: NameKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum NameKind {
    Local(String),
    Abstract(String),
    Remote {
        host: String,
        name: String,
    },
    /// An explicit socket path (Unix), validated by `validate_path`.
    Path(String),
}

/// Where a pipe lives in the operating system, as returned by [`PipeName::address`].
///
/// # Examples
///
/// ```
/// use npipe::{Address, PipeName};
///
/// match PipeName::new("orders")?.address()? {
///     Address::Path(path) => println!("the socket file {}", path.display()),
///     Address::Windows(path) => assert_eq!(path, r"\\.\pipe\orders"),
///     // Abstract sockets (`@NAME`, Linux), and forms added later.
///     other => println!("{other}"),
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A Unix domain socket file.
    Path(PathBuf),
    /// A Linux abstract-namespace socket; the string is the name after the leading NUL.
    Abstract(String),
    /// A Windows named pipe path: `\\.\pipe\NAME`, or `\\HOST\pipe\NAME` for a
    /// pipe on another machine (reached through SMB).
    Windows(String),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Path(path) => write!(f, "{}", path.display()),
            Address::Abstract(name) => write!(f, "@{name}"),
            Address::Windows(path) => f.write_str(path),
        }
    }
}

impl PipeName {
    /// Parses and validates a pipe name.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidName`] (an `io::ErrorKind::InvalidInput`) naming the rule broken.
    ///
    /// # Examples
    ///
    /// ```
    /// use npipe::{ErrorKind, PipeName};
    ///
    /// let name = PipeName::new(r"\\.\pipe\orders")?;
    /// assert_eq!(name.as_str(), "orders");
    /// assert_eq!(name.host(), None);
    ///
    /// // A name read from a user: tell them which rule it breaks.
    /// match PipeName::new("two\nlines") {
    ///     Ok(name) => println!("using {name}"),
    ///     Err(e) => {
    ///         assert_eq!(ErrorKind::of(&e), ErrorKind::InvalidName);
    ///         eprintln!("{e}");
    ///     }
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(name: &str) -> io::Result<PipeName> {
        let kind = if let Some(rest) = strip_windows_prefix(name) {
            let (host, pipe) = rest;
            validate(pipe)?;
            if host == "." {
                NameKind::Local(pipe.to_owned())
            } else {
                validate_host(host)?;
                NameKind::Remote {
                    host: host.to_owned(),
                    name: pipe.to_owned(),
                }
            }
        } else if name.starts_with('/') {
            validate_path(name)?;
            NameKind::Path(name.to_owned())
        } else if let Some(abstract_name) = name.strip_prefix('@') {
            validate(abstract_name)?;
            NameKind::Abstract(abstract_name.to_owned())
        } else {
            validate(name)?;
            NameKind::Local(name.to_owned())
        };
        Ok(PipeName { kind })
    }

    /// The bare name, without any prefix (`orders` for `\\.\pipe\orders` and `@orders`);
    /// for an explicit socket path, the whole path as written (`/run/app/api.sock`):
    /// the path is the name, and its file name alone would not tell two pipes apart.
    pub fn as_str(&self) -> &str {
        match &self.kind {
            NameKind::Local(name) | NameKind::Abstract(name) | NameKind::Path(name) => name,
            NameKind::Remote { name, .. } => name,
        }
    }

    /// The socket path of an explicit-path name (`/run/app/api.sock`), as written;
    /// `None` for every other form.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::path::Path;
    /// use npipe::PipeName;
    ///
    /// let name: PipeName = "/run/app/api.sock".parse()?;
    /// assert_eq!(name.socket_path(), Some(Path::new("/run/app/api.sock")));
    /// assert_eq!(name.as_str(), "/run/app/api.sock");
    /// assert_eq!("orders".parse::<PipeName>()?.socket_path(), None);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn socket_path(&self) -> Option<&Path> {
        match &self.kind {
            NameKind::Path(path) => Some(Path::new(path)),
            _ => None,
        }
    }

    /// The remote host for `\\HOST\pipe\NAME`, `None` for a local pipe.
    ///
    /// A remote name makes a client run ssh (Unix) or open an SMB connection
    /// (Windows) toward HOST: check this before connecting to a name taken from
    /// input you do not trust.
    pub fn host(&self) -> Option<&str> {
        match &self.kind {
            NameKind::Remote { host, .. } => Some(host),
            _ => None,
        }
    }

    /// Whether the name is in the Linux abstract namespace (`@NAME`).
    pub fn is_abstract(&self) -> bool {
        matches!(self.kind, NameKind::Abstract(_))
    }

    /// Where this pipe lives on this operating system.
    ///
    /// On Unix, `NAME` is the socket file `/tmp/npipe-NAME`, or `$NPIPE_DIR/NAME` when
    /// `NPIPE_DIR` is set (with the directory's canonical path: symlinks resolved).
    /// An explicit path `/DIR/FILE` (Unix) is that file, in the canonical path of
    /// `DIR`, which is checked and held exactly as `$NPIPE_DIR` is.
    /// `@NAME` is the abstract socket `NAME` (Linux). On Windows it is `\\.\pipe\NAME`,
    /// and `\\HOST\pipe\NAME` is that UNC path: a pipe on HOST, which clients open
    /// through SMB like any other pipe (`CreateFileW`, `WaitNamedPipeW`).
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::Unsupported`] for `@NAME` outside Linux, for explicit socket
    ///   paths on Windows, and on Unix for remote names (a remote pipe has no
    ///   address here: it is reached through ssh).
    /// - [`ErrorKind::InvalidName`] on Windows for a host made only of dots (`..`),
    ///   which names no machine.
    /// - [`ErrorKind::InvalidName`] when the socket path would not fit in `sun_path`
    ///   (the message gives the limit): it is never truncated.
    /// - [`ErrorKind::AccessDenied`] when another user could change what the pipe
    ///   directory holds: `$NPIPE_DIR` (or an explicit path's directory), or any
    ///   directory above it, is writable by others without the sticky bit, or owned
    ///   by another non-root user; the message names that directory, its owner and
    ///   mode, and the fix.
    /// - `NotFound` when `$NPIPE_DIR` (or an explicit path's directory) does not exist.
    ///
    /// # Examples
    ///
    /// ```
    /// let name = npipe::PipeName::new("orders")?;
    /// // `/tmp/npipe-orders` on Unix, `\\.\pipe\orders` on Windows.
    /// println!("{name} lives at {}", name.address()?);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn address(&self) -> io::Result<Address> {
        #[cfg(unix)]
        return self.endpoint().map(|endpoint| endpoint.address());
        #[cfg(windows)]
        match &self.kind {
            NameKind::Remote { host, name } => smb_path(host, name).map(Address::Windows),
            NameKind::Local(name) => Ok(Address::Windows(format!(r"\\.\pipe\{name}"))),
            NameKind::Abstract(name) => Err(err(
                ErrorKind::Unsupported,
                format!("abstract socket names (@{name}) exist only on Linux"),
            )),
            NameKind::Path(path) => Err(err(
                ErrorKind::Unsupported,
                format!(
                    r"{path}: an explicit socket path names a Unix socket; on Windows use NAME or \\.\pipe\NAME"
                ),
            )),
        }
    }

    /// The pipe resolved for the Unix backend: its socket file in the held pipe
    /// directory, or its abstract name. Errors as for [`address`](Self::address).
    #[cfg(unix)]
    pub(crate) fn endpoint(&self) -> io::Result<crate::sys::Endpoint> {
        match &self.kind {
            NameKind::Remote { host, name } => Err(remote_elsewhere(host, name)),
            NameKind::Local(name) => crate::sys::local_endpoint(name),
            NameKind::Abstract(name) => crate::sys::abstract_endpoint(name),
            NameKind::Path(path) => crate::sys::path_endpoint(Path::new(path)),
        }
    }
}

/// The UNC path of a pipe on another Windows machine, opened through SMB. A host
/// made only of dots is refused: Windows' path rules would read `..` as a step up,
/// not as a machine.
#[cfg(windows)]
fn smb_path(host: &str, name: &str) -> io::Result<String> {
    if host.chars().all(|c| c == '.') {
        return Err(err(
            ErrorKind::InvalidName,
            format!("invalid host {host:?} in pipe name: it names no machine (`.` is this one)"),
        ));
    }
    Ok(format!(r"\\{host}\pipe\{name}"))
}

/// What a remote name cannot do on Unix: it is a pipe on HOST, reached through
/// ssh (connect, `call`, `wait`), with no file or socket here.
#[cfg(unix)]
fn remote_elsewhere(host: &str, name: &str) -> io::Error {
    err(
        ErrorKind::Unsupported,
        format!(
            "\\\\{host}\\pipe\\{name} is a pipe on {host}: it can be connected to, called \
             and waited for (through ssh), but not created, inspected or listed from here \
             (run npipe on {host} for that: `npipe serve {name}`, `npipe info {name}`)"
        ),
    )
}

impl fmt::Display for PipeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            // `\\.\pipe\@x` is a local pipe whose name starts with `@`: written as
            // `@x` it would read back as the abstract socket `x`.
            NameKind::Local(name) if name.starts_with('@') => write!(f, r"\\.\pipe\{name}"),
            NameKind::Local(name) => f.write_str(name),
            NameKind::Abstract(name) => write!(f, "@{name}"),
            NameKind::Remote { host, name } => write!(f, r"\\{host}\pipe\{name}"),
            NameKind::Path(path) => f.write_str(path),
        }
    }
}

impl FromStr for PipeName {
    type Err = io::Error;

    fn from_str(s: &str) -> io::Result<PipeName> {
        PipeName::new(s)
    }
}

/// Anything that can name a pipe: `&str`, `String`, or a parsed [`PipeName`].
///
/// Like std's `ToSocketAddrs`, it lets every function take either a string or a
/// name parsed once up front.
///
/// # Examples
///
/// ```
/// use std::io;
/// use npipe::{PipeName, ToPipeName};
///
/// // Takes a name the way npipe's own functions do.
/// fn label(name: impl ToPipeName) -> io::Result<String> {
///     Ok(format!("pipe {}", name.to_pipe_name()?))
/// }
///
/// assert_eq!(label("orders")?, "pipe orders");
/// assert_eq!(label(String::from("orders"))?, "pipe orders");
/// let parsed: PipeName = r"\\.\pipe\orders".parse()?;
/// assert_eq!(label(&parsed)?, "pipe orders");
/// # Ok::<(), io::Error>(())
/// ```
pub trait ToPipeName {
    /// Parses (or clones) the name.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidName`] when the string is not a valid name.
    fn to_pipe_name(&self) -> io::Result<PipeName>;
}

impl ToPipeName for PipeName {
    fn to_pipe_name(&self) -> io::Result<PipeName> {
        Ok(self.clone())
    }
}

impl ToPipeName for str {
    fn to_pipe_name(&self) -> io::Result<PipeName> {
        PipeName::new(self)
    }
}

impl ToPipeName for String {
    fn to_pipe_name(&self) -> io::Result<PipeName> {
        PipeName::new(self)
    }
}

impl<T: ToPipeName + ?Sized> ToPipeName for &T {
    fn to_pipe_name(&self) -> io::Result<PipeName> {
        (**self).to_pipe_name()
    }
}

/// Splits `\\HOST\pipe\NAME` (either slash style) into `(HOST, NAME)`.
fn strip_windows_prefix(name: &str) -> Option<(&str, &str)> {
    let rest = name
        .strip_prefix(r"\\")
        .or_else(|| name.strip_prefix("//"))?;
    let sep = rest.find(['\\', '/'])?;
    let (host, rest) = rest.split_at(sep);
    let rest = &rest[1..];
    let (pipe, pipe_name) = rest.split_at(rest.find(['\\', '/'])?);
    if !pipe.eq_ignore_ascii_case("pipe") {
        return None;
    }
    Some((host, &pipe_name[1..]))
}

fn invalid(name: &str, rule: &str) -> io::Error {
    err(
        ErrorKind::InvalidName,
        format!("invalid pipe name {name:?}: {rule}"),
    )
}

fn validate(name: &str) -> io::Result<()> {
    if name.is_empty() {
        return Err(invalid(name, "the name is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(
            name,
            &format!(
                "the name is {} bytes long; the limit is {MAX_NAME_LEN}",
                name.len()
            ),
        ));
    }
    if name == "." || name == ".." {
        return Err(invalid(name, "`.` and `..` are not names"));
    }
    // One pass for both separators (every name is checked on every connect).
    let separator = name.bytes().find(|b| *b == b'/' || *b == b'\\');
    // Before the rule on `.`: `./x` and `../x` are relative paths, and this is the
    // rule they break.
    if separator == Some(b'/') {
        return Err(invalid(
            name,
            "a name may not contain `/` (an explicit socket path is absolute: it starts with `/`)",
        ));
    }
    if name.starts_with('.') {
        return Err(invalid(name, "a name may not start with `.`"));
    }
    if separator.is_some() {
        return Err(invalid(name, "a name may not contain `\\`"));
    }
    printable(name)
}

fn printable(name: &str) -> io::Result<()> {
    if let Some(c) = name.chars().find(|c| is_invisible(*c)) {
        return Err(invalid(
            name,
            &format!(
                "a name may contain only printable characters (found U+{:04X})",
                c as u32
            ),
        ));
    }
    Ok(())
}

/// The rules of an explicit socket path (it starts with `/`): one spelling per
/// file, so that equal names are equal paths and nothing in the name climbs out of
/// the directory it names.
fn validate_path(path: &str) -> io::Result<()> {
    if path.len() > MAX_NAME_LEN {
        return Err(invalid(
            path,
            &format!(
                "the path is {} bytes long; the limit is {MAX_NAME_LEN}",
                path.len()
            ),
        ));
    }
    if path.ends_with('/') {
        return Err(invalid(
            path,
            "a socket path names a file: it may not end with `/`",
        ));
    }
    if path.contains('\\') {
        return Err(invalid(path, "a socket path may not contain `\\`"));
    }
    for component in path[1..].split('/') {
        match component {
            "" => return Err(invalid(path, "a socket path may not contain `//`")),
            "." | ".." => {
                return Err(invalid(
                    path,
                    "a socket path may not contain `.` or `..` components",
                ))
            }
            _ => {}
        }
    }
    if path
        .rsplit('/')
        .next()
        .is_some_and(|file| file.starts_with('.'))
    {
        return Err(invalid(
            path,
            "a socket file name may not start with `.` (npipe keeps `.FILE.lock` and `.FILE.info` beside the socket)",
        ));
    }
    printable(path)
}

/// Characters that print as nothing or change how the text around them prints:
/// controls, format characters (zero-width spaces and joiners, bidirectional
/// overrides, soft hyphens...), line and paragraph separators. A name holding
/// one could look exactly like another name (`pay\u{200B}ments` and `payments`)
/// in a listing.
fn is_invisible(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// A host name as ssh and SMB take it. Never starting with `-`: on a command
/// line it would read as an option.
fn validate_host(host: &str) -> io::Result<()> {
    let ok = !host.is_empty()
        && !host.starts_with('-')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(err(
            ErrorKind::InvalidName,
            format!(
                "invalid host {host:?} in pipe name: use letters, digits, `-`, `_` and `.`, \
                 not starting with `-`"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(name: &str) -> ErrorKind {
        ErrorKind::of(&PipeName::new(name).unwrap_err())
    }

    #[test]
    fn plain_and_windows_forms_are_equal() {
        let plain = PipeName::new("orders").unwrap();
        assert_eq!(PipeName::new(r"\\.\pipe\orders").unwrap(), plain);
        assert_eq!(PipeName::new(r"\\.\PIPE\orders").unwrap(), plain);
        assert_eq!(PipeName::new("//./pipe/orders").unwrap(), plain);
        assert_eq!(plain.to_string(), "orders");
        assert_eq!(plain.host(), None);
    }

    #[cfg(unix)]
    #[test]
    fn remote_names_parse_but_do_not_resolve() {
        let remote = PipeName::new(r"\\build-01\pipe\jobs").unwrap();
        assert_eq!(remote.host(), Some("build-01"));
        assert_eq!(remote.as_str(), "jobs");
        assert_eq!(remote.to_string(), r"\\build-01\pipe\jobs");
        #[cfg(unix)]
        {
            let e = remote.address().unwrap_err();
            assert_eq!(ErrorKind::of(&e), ErrorKind::Unsupported);
            assert!(e.to_string().contains("is a pipe on build-01"), "{e}");
        }
    }

    /// On Windows `\\HOST\pipe\NAME` is the UNC path of a pipe on HOST, opened
    /// through SMB; `.` stays this machine, and a host of dots names no machine.
    #[cfg(windows)]
    #[test]
    fn remote_names_map_to_their_unc_path() {
        for text in [
            r"\\build-01\pipe\jobs",
            "//build-01/pipe/jobs",
            r"\\build-01\PIPE\jobs",
        ] {
            let remote = PipeName::new(text).unwrap();
            assert_eq!(remote.host(), Some("build-01"));
            assert_eq!(remote.as_str(), "jobs");
            assert_eq!(remote.to_string(), r"\\build-01\pipe\jobs");
            assert_eq!(
                remote.address().unwrap(),
                Address::Windows(r"\\build-01\pipe\jobs".to_owned()),
                "{text}"
            );
        }
        let local = PipeName::new("//./pipe/jobs").unwrap();
        assert_eq!(local.host(), None);
        assert_eq!(
            local.address().unwrap(),
            Address::Windows(r"\\.\pipe\jobs".to_owned())
        );
        for dots in [r"\\..\pipe\jobs", r"\\...\pipe\jobs"] {
            let e = PipeName::new(dots).unwrap().address().unwrap_err();
            assert_eq!(ErrorKind::of(&e), ErrorKind::InvalidName, "{dots}: {e}");
            assert!(e.to_string().contains("names no machine"), "{e}");
        }
        for bad in [
            r"\\a?b\pipe\x",
            r"\\a:b\pipe\x",
            r"\\a b\pipe\x",
            r"\\\pipe\x",
        ] {
            assert_eq!(kind(bad), ErrorKind::InvalidName, "{bad}");
        }
    }

    /// Found by `fuzz/fuzz_targets/name_parser.rs`: `\\.\pipe\@` printed as `@`.
    #[test]
    fn local_names_starting_with_at_print_back_to_themselves() {
        for text in [r"\\./pIPe/@", r"\\.\pipe\@bus"] {
            let name = PipeName::new(text).unwrap();
            assert!(!name.is_abstract());
            assert_eq!(PipeName::new(&name.to_string()).unwrap(), name, "{text}");
        }
    }

    #[test]
    fn abstract_names() {
        let name = PipeName::new("@bus").unwrap();
        assert!(name.is_abstract());
        assert_eq!(name.as_str(), "bus");
        assert_eq!(name.to_string(), "@bus");
    }

    #[test]
    fn invalid_names_say_why() {
        for (name, needle) in [
            ("", "empty"),
            (".", "not names"),
            ("..", "not names"),
            (".hidden", "start with `.`"),
            ("a/b", "`/`"),
            (r"a\b", r"`\`"),
            ("a\0b", "printable"),
            ("tab\there", "printable"),
            ("pay\u{200B}ments", "printable"),
            ("\u{202E}evil", "printable"),
            ("soft\u{AD}hyphen", "printable"),
            ("line\u{2028}break", "printable"),
            ("@", "empty"),
            (r"\\.\pipe\", "empty"),
            (r"\\.\pipe\..", "not names"),
        ] {
            let e = PipeName::new(name).unwrap_err();
            assert_eq!(ErrorKind::of(&e), ErrorKind::InvalidName, "{name:?}");
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            assert!(e.to_string().contains(needle), "{name:?}: {e}");
        }
        let long = "x".repeat(300);
        assert!(PipeName::new(&long)
            .unwrap_err()
            .to_string()
            .contains("the limit is 247"));
        assert_eq!(kind(r"\\bad host\pipe\x"), ErrorKind::InvalidName);
        // On a command line (ssh's) it would be an option.
        assert_eq!(kind(r"\\-oProxyCommand\pipe\x"), ErrorKind::InvalidName);
    }

    #[test]
    fn explicit_socket_paths() {
        let name = PipeName::new("/run/app/api.sock").unwrap();
        assert_eq!(name.socket_path(), Some(Path::new("/run/app/api.sock")));
        assert_eq!(name.as_str(), "/run/app/api.sock");
        assert_eq!(name.to_string(), "/run/app/api.sock");
        assert_eq!(PipeName::new(&name.to_string()).unwrap(), name);
        assert!(!name.is_abstract());
        assert_eq!(name.host(), None);
        assert_eq!(PipeName::new("orders").unwrap().socket_path(), None);
        // `//./pipe/NAME` is still the Windows form, not a path.
        assert_eq!(
            PipeName::new("//./pipe/orders").unwrap(),
            PipeName::new("orders").unwrap()
        );
        assert!(PipeName::new("/with space/and:colon").is_ok());
    }

    #[test]
    fn invalid_socket_paths_say_why() {
        for (path, needle) in [
            ("relative/api.sock", "is absolute: it starts with `/`"),
            ("./api.sock", "is absolute: it starts with `/`"),
            ("../etc/api.sock", "is absolute: it starts with `/`"),
            ("/", "may not end with `/`"),
            ("/run/app/", "may not end with `/`"),
            ("/run//api.sock", "`//`"),
            ("//run/api.sock", "`//`"),
            ("/run/../etc/api.sock", "`.` or `..` components"),
            ("/run/./api.sock", "`.` or `..` components"),
            ("/run/app/..", "`.` or `..` components"),
            ("/run/.hidden", "may not start with `.`"),
            (r"/run\app", r"`\`"),
            ("/run/a\u{200B}pi.sock", "printable"),
            ("/run/a\0b", "printable"),
        ] {
            let e = PipeName::new(path).unwrap_err();
            assert_eq!(ErrorKind::of(&e), ErrorKind::InvalidName, "{path:?}");
            assert!(e.to_string().contains(needle), "{path:?}: {e}");
        }
        let long = format!("/{}", "p".repeat(300));
        assert!(PipeName::new(&long)
            .unwrap_err()
            .to_string()
            .contains("the limit is 247"));
    }

    #[cfg(windows)]
    #[test]
    fn explicit_socket_paths_are_refused_on_windows() {
        let e = PipeName::new("/run/app/api.sock")
            .unwrap()
            .address()
            .unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::Unsupported);
        assert!(
            e.to_string().contains(
                r"an explicit socket path names a Unix socket; on Windows use NAME or \\.\pipe\NAME"
            ),
            "{e}"
        );
    }

    #[test]
    fn other_prefixes_are_plain_names_with_rules() {
        // `\\.\other\x` is not a pipe path, so it is judged as a bare name.
        assert_eq!(kind(r"\\.\other\x"), ErrorKind::InvalidName);
        assert!(PipeName::new("unicode-ünïcødé").is_ok());
        assert!(PipeName::new("with space and:colon").is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn unix_paths_never_truncate() {
        let name = PipeName::new(&"n".repeat(200)).unwrap();
        let e = name.address().unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::InvalidName);
        assert!(e.to_string().contains("limit"), "{e}");
    }
}
