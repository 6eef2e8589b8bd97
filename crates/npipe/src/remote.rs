//! Remote pipes on Unix (`\\HOST\pipe\NAME`), through OpenSSH: the ssh client's
//! command line, the bridge's handshake, and what each way of failing means.
//! Pure logic; the ssh process and its socket are in `sys::unix::remote`.
//!
//! A client runs `ssh HOST npipe bridge --handshake --timeout T -- NAME` with one
//! end of a socket pair as the ssh client's stdin and stdout, and the other end
//! as its stream's socket. `npipe bridge` on HOST connects to its pipe `NAME` by
//! HOST's rules and answers with one line before the raw bytes of the pipe
//! (the handshake):
//!
//! ```text
//! npipe-bridge 1 ok pid=P uid=U gid=G
//! npipe-bridge 1 error KIND MESSAGE
//! ```
//!
//! `KIND` is `notfound`, `busy`, `denied`, `invalid`, `timeout` or `other`;
//! fields of `ok` are `key=value` words, any of which may be missing, and words
//! this version does not know are ignored. ssh fails with status 255 before any
//! handshake; a shell that cannot find npipe, with 127.

use std::ffi::OsString;
use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use crate::error::{err, ErrorKind};
use crate::peer::PeerCredentials;

/// How long ssh may take to connect to HOST and log in, on top of the connect
/// timeout (which bounds the wait for the pipe on HOST, as it does here). Also
/// ssh's `ConnectTimeout`.
pub(crate) const SETUP: Duration = crate::REMOTE_SETUP;

/// The ssh client, and its first words: `$NPIPE_SSH` split at white space
/// (`ssh -F ~/.ssh/other_config`), or `ssh`.
pub(crate) const SSH_VAR: &str = "NPIPE_SSH";

/// The path of npipe on HOST: `$NPIPE_REMOTE_NPIPE`, or `npipe` (found on the
/// PATH of a non-interactive ssh session there).
pub(crate) const REMOTE_NPIPE_VAR: &str = "NPIPE_REMOTE_NPIPE";

/// The first word of every handshake line, and the version this npipe speaks.
pub(crate) const HANDSHAKE: &str = "npipe-bridge";
pub(crate) const HANDSHAKE_VERSION: &str = "1";

/// The longest handshake line read; anything longer is not a handshake.
pub(crate) const MAX_HANDSHAKE: usize = 4096;

/// The ssh command that runs `remote_command` (a command line for HOST's shell)
/// on `host`: the program and its arguments.
///
/// `-T`: no terminal. `-e none`: no escape character, so that a payload holding
/// `\n~.` is carried, not obeyed. `BatchMode`: never ask for a password or a
/// host key confirmation (a library cannot answer). No agent or X11 forwarding
/// and none of the config's port forwardings: the bridge needs none of them.
/// Words of `$NPIPE_SSH` come first, so that its `-o` options win (ssh keeps the
/// first value it is given).
pub(crate) fn ssh_command(host: &str, remote_command: &str) -> (OsString, Vec<OsString>) {
    let configured = std::env::var_os(SSH_VAR).unwrap_or_default();
    let configured = configured.to_string_lossy();
    let mut words = configured.split_whitespace().map(OsString::from);
    let program = words.next().unwrap_or_else(|| OsString::from("ssh"));
    let mut args: Vec<OsString> = words.collect();
    let connect_timeout = format!("ConnectTimeout={}", SETUP.as_secs());
    for arg in [
        "-T",
        "-e",
        "none",
        "-o",
        "BatchMode=yes",
        "-o",
        &connect_timeout,
        "-o",
        "ForwardAgent=no",
        "-o",
        "ForwardX11=no",
        "-o",
        "ClearAllForwardings=yes",
        "--",
        host,
        remote_command,
    ] {
        args.push(OsString::from(arg));
    }
    (program, args)
}

/// The command line, for HOST's shell, of `npipe bridge` to pipe `pipe` there.
pub(crate) fn bridge_command(pipe: &str, timeout: Duration) -> String {
    format!(
        "{} bridge --handshake --timeout {}ms -- {}",
        shell_quote(&npipe_on_host()),
        timeout.as_millis(),
        shell_quote(&name_on_host(pipe))
    )
}

/// The command line, for HOST's shell, of `npipe wait` for pipe `pipe` there.
pub(crate) fn wait_command(pipe: &str, timeout: Duration) -> String {
    format!(
        "{} wait --timeout {}ms -- {}",
        shell_quote(&npipe_on_host()),
        timeout.as_millis(),
        shell_quote(&name_on_host(pipe))
    )
}

fn npipe_on_host() -> String {
    match std::env::var(REMOTE_NPIPE_VAR) {
        Ok(path) if !path.is_empty() => path,
        _ => "npipe".to_owned(),
    }
}

/// How HOST's npipe is told the pipe `pipe` of `\\HOST\pipe\NAME`: as `NAME`,
/// but a name starting with `@` in the Windows form (on Linux `@NAME` is an
/// abstract socket, and `\\HOST\pipe\@x` is a pipe named `@x`).
fn name_on_host(pipe: &str) -> String {
    if pipe.starts_with('@') {
        format!(r"\\.\pipe\{pipe}")
    } else {
        pipe.to_owned()
    }
}

/// `text` as one word for a POSIX shell (and csh): in single quotes, each `'`
/// written as `'\''`. fish reads `\\` and `\'` inside single quotes as escapes:
/// there a name holding a backslash (`\\.\pipe\@x`, the form that keeps a
/// leading `@` a pipe name) arrives changed and is refused as invalid on HOST;
/// nothing else is run either way.
pub(crate) fn shell_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        if c == '\'' {
            out.push_str(r"'\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// The error kind of a handshake's `KIND` (`other` and words this version does
/// not know are [`ErrorKind::Io`]).
fn kind_of_handshake(word: &str) -> ErrorKind {
    match word {
        "notfound" => ErrorKind::NotFound,
        "busy" => ErrorKind::PipeBusy,
        "denied" => ErrorKind::AccessDenied,
        "invalid" => ErrorKind::InvalidName,
        "timeout" => ErrorKind::Timeout,
        _ => ErrorKind::Io,
    }
}

/// Reads the handshake line `line` (without its newline) that the bridge on
/// `host` sent: the remote server's credentials, or the error the bridge met
/// (its kind kept, its text prefixed with "on HOST").
pub(crate) fn parse_handshake(host: &str, line: &[u8]) -> io::Result<PeerCredentials> {
    let text = String::from_utf8_lossy(line);
    let mut words = text.splitn(4, ' ');
    if words.next() != Some(HANDSHAKE) {
        return Err(err(
            ErrorKind::InvalidData,
            format!(
                "{host} printed {:?} where npipe's bridge answers: a shell start-up file \
                 there (~/.bashrc, ~/.profile) may print text in non-interactive sessions, \
                 or NPIPE_REMOTE_NPIPE names another program",
                host_text(line)
            ),
        ));
    }
    let version = words.next().unwrap_or_default();
    if version != HANDSHAKE_VERSION {
        return Err(err(
            ErrorKind::Unsupported,
            format!(
                "npipe on {host} speaks bridge version {:?}, this npipe speaks {HANDSHAKE_VERSION}: \
                 install the same version of npipe on both machines",
                host_text(version.as_bytes())
            ),
        ));
    }
    match words.next() {
        Some("ok") => {
            let fields = words.collect::<Vec<_>>().join(" ");
            let mut ids = [None; 3];
            for word in fields.split(' ') {
                let Some((key, value)) = word.split_once('=') else {
                    continue;
                };
                let slot = match key {
                    "pid" => 0,
                    "uid" => 1,
                    "gid" => 2,
                    _ => continue,
                };
                ids[slot] = value.parse::<u32>().ok();
            }
            Ok(PeerCredentials::new(ids[0], ids[1], ids[2]))
        }
        Some("error") => {
            let rest = words.next().unwrap_or_default();
            let (kind, message) = rest.split_once(' ').unwrap_or((rest, ""));
            Err(err(
                kind_of_handshake(kind),
                format!("on {host}: {}", host_text(message.as_bytes())),
            ))
        }
        _ => Err(err(
            ErrorKind::InvalidData,
            format!(
                "npipe's bridge on {host} answered {:?}, which this npipe does not understand",
                host_text(line)
            ),
        )),
    }
}

/// The error of an ssh client that exited with `status` before the bridge on
/// `host` answered (or, for `wait`, of an npipe there that failed), with what
/// ssh and HOST's shell and npipe wrote on ssh's stderr.
pub(crate) fn exit_failure(host: &str, status: ExitStatus, stderr: &[u8]) -> io::Error {
    let said = host_text(stderr);
    let said_npipe = said.strip_prefix("npipe: ").unwrap_or(&said).to_owned();
    let or_nothing = |text: &str| {
        if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        }
    };
    let in_brackets = if said.is_empty() {
        String::new()
    } else {
        format!(" ({said})")
    };
    let Some(code) = status.code() else {
        return err(
            ErrorKind::Io,
            format!(
                "the ssh client for {host} was killed ({status}){}",
                or_nothing(&said)
            ),
        );
    };
    match code {
        255 => {
            let lower = said.to_ascii_lowercase();
            let kind = if lower.contains("permission denied")
                || lower.contains("host key verification failed")
                || lower.contains("too many authentication failures")
            {
                ErrorKind::AccessDenied
            } else if lower.contains("timed out") {
                ErrorKind::Timeout
            } else {
                ErrorKind::Io
            };
            let what = if kind == ErrorKind::AccessDenied {
                "log in to"
            } else {
                "connect to"
            };
            err(
                kind,
                format!("ssh could not {what} {host}{}", or_nothing(&said)),
            )
        }
        127 => err(
            ErrorKind::Unsupported,
            format!(
                "npipe is not installed on {host}, or not on the PATH of a non-interactive \
                 ssh session there{in_brackets}: install npipe on {host}, or set \
                 {REMOTE_NPIPE_VAR} to its path there"
            ),
        ),
        126 => err(
            ErrorKind::Unsupported,
            format!(
                "npipe on {host} cannot be run{in_brackets}: check {REMOTE_NPIPE_VAR} and \
                 the file's permissions there"
            ),
        ),
        2 if said.contains("unrecognized subcommand") || said.contains("unexpected argument") => {
            err(
                ErrorKind::Unsupported,
                format!(
                    "npipe on {host} does not know this command (an older version?)\
                     {in_brackets}: install this version of npipe there"
                ),
            )
        }
        code => {
            let kind = match code {
                2 => ErrorKind::InvalidName,
                3 => ErrorKind::NotFound,
                4 => ErrorKind::PipeBusy,
                5 => ErrorKind::Timeout,
                6 => ErrorKind::AccessDenied,
                7 => ErrorKind::AddrInUse,
                8 => ErrorKind::Disconnected,
                _ => ErrorKind::Io,
            };
            if said_npipe.is_empty() {
                err(
                    kind,
                    format!("on {host}: npipe exited with status {code} and said nothing"),
                )
            } else {
                err(kind, format!("on {host}: {said_npipe}"))
            }
        }
    }
}

/// The error of a message client whose first frame was the remote server's
/// [`REFUSAL_NOTICE`](crate::REFUSAL_NOTICE): its access policy refused the user
/// ssh logged in as there.
pub(crate) fn refused() -> io::Error {
    err(
        ErrorKind::AccessDenied,
        "the server on the remote host refused the credentials of the user ssh logged in \
         as there: its access policy does not admit them",
    )
}

/// Text from another machine, made fit for an error message: invalid UTF-8
/// replaced, control and invisible characters escaped (they could act on the
/// terminal that shows the message), lines joined with `; `, at most 1,000
/// characters.
pub(crate) fn host_text(bytes: &[u8]) -> String {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    const MAX: usize = 1000;
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for (i, line) in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if i > 0 {
            out.push_str("; ");
        }
        for c in line.chars() {
            let invisible = matches!(
                c.general_category(),
                GeneralCategory::Control
                    | GeneralCategory::Format
                    | GeneralCategory::LineSeparator
                    | GeneralCategory::ParagraphSeparator
            );
            if invisible {
                out.extend(c.escape_unicode());
            } else {
                out.push(c);
            }
        }
        if out.chars().count() > MAX {
            let cut: String = out.chars().take(MAX).collect();
            return format!("{cut}...");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    fn exited(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn quoting_survives_the_shell() {
        assert_eq!(shell_quote("plain"), "'plain'");
        assert_eq!(shell_quote("it's $HOME"), r"'it'\''s $HOME'");
        for text in ["a b  c", "it's", "$(touch /tmp/x)", "`x`", "*", "ü'\"'"] {
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("printf %s {}", shell_quote(text))])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), text);
        }
    }

    #[test]
    fn names_starting_with_at_stay_pipe_names_on_the_host() {
        assert!(bridge_command("jobs", Duration::from_millis(1500))
            .ends_with("bridge --handshake --timeout 1500ms -- 'jobs'"));
        assert!(bridge_command("@x", Duration::ZERO).ends_with(r"-- '\\.\pipe\@x'"));
    }

    #[test]
    fn handshakes_are_read() {
        let ok = parse_handshake("h", b"npipe-bridge 1 ok pid=12 uid=0 gid=5").unwrap();
        assert_eq!((ok.pid(), ok.uid(), ok.gid()), (Some(12), Some(0), Some(5)));
        let partial = parse_handshake("h", b"npipe-bridge 1 ok uid=7 future=x").unwrap();
        assert_eq!((partial.pid(), partial.uid()), (None, Some(7)));
        for (line, kind) in [
            ("notfound", ErrorKind::NotFound),
            ("busy", ErrorKind::PipeBusy),
            ("denied", ErrorKind::AccessDenied),
            ("invalid", ErrorKind::InvalidName),
            ("timeout", ErrorKind::Timeout),
            ("other", ErrorKind::Io),
            ("newfangled", ErrorKind::Io),
        ] {
            let e = parse_handshake(
                "h",
                format!("npipe-bridge 1 error {line} it went wrong").as_bytes(),
            )
            .unwrap_err();
            assert_eq!(ErrorKind::of(&e), kind, "{line}");
            assert_eq!(e.to_string(), "on h: it went wrong");
        }
    }

    #[test]
    fn what_is_not_a_handshake_is_quoted_safely() {
        let e = parse_handshake("h", b"Welcome to \x1b[31mh").unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::InvalidData);
        assert!(e.to_string().contains(r"Welcome to \\u{1b}[31mh"), "{e}");
        let e = parse_handshake("h", b"npipe-bridge 2 ok").unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::Unsupported);
        assert!(e.to_string().contains("same version"), "{e}");
    }

    #[test]
    fn ssh_exits_say_which_side_failed() {
        let e = exit_failure(
            "h",
            exited(255),
            b"ssh: connect to host 127.0.0.1 port 1: Connection refused\r\n",
        );
        assert_eq!(ErrorKind::of(&e), ErrorKind::Io);
        assert_eq!(
            e.to_string(),
            "ssh could not connect to h: ssh: connect to host 127.0.0.1 port 1: Connection refused"
        );
        let e = exit_failure(
            "h",
            exited(255),
            b"root@h: Permission denied (publickey).\n",
        );
        assert_eq!(ErrorKind::of(&e), ErrorKind::AccessDenied);
        assert!(
            e.to_string().starts_with("ssh could not log in to h"),
            "{e}"
        );
        let e = exit_failure("h", exited(127), b"sh: 1: npipe: not found\n");
        assert_eq!(ErrorKind::of(&e), ErrorKind::Unsupported);
        assert!(e.to_string().contains("not installed on h"), "{e}");
        assert!(e.to_string().contains(REMOTE_NPIPE_VAR), "{e}");
        let e = exit_failure("h", exited(5), b"npipe: waiting for pipe x: no server\n");
        assert_eq!(ErrorKind::of(&e), ErrorKind::Timeout);
        assert_eq!(e.to_string(), "on h: waiting for pipe x: no server");
    }

    #[test]
    fn host_text_is_one_bounded_line() {
        assert_eq!(host_text(b"a\n\n b \r\nc"), "a; b; c");
        assert_eq!(host_text(&[b'x'; 5000]).len(), 1003);
    }
}
