//! One module per verb: its `Args` (clap) and `run`.

pub(crate) mod bench;
pub(crate) mod bridge;
pub(crate) mod call;
pub(crate) mod completions;
pub(crate) mod demo;
pub(crate) mod forward;
pub(crate) mod info;
pub(crate) mod list;
pub(crate) mod listen;
pub(crate) mod send;
pub(crate) mod serve;
pub(crate) mod wait;

use std::borrow::Cow;
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

/// One field of a line, `text`, made safe for a terminal: control characters
/// (newlines too: a field never starts a line of its own) and the characters that
/// print as nothing or change how the text around them prints (format characters
/// such as bidirectional overrides, line and paragraph separators) are shown
/// escaped, as `\u{1b}`. What `info` and `list` print comes partly from other
/// users (the name of the process serving a pipe is its owner's choice), who must
/// not reach the reader's terminal, nor forge a line, through it.
pub(crate) fn terminal_safe(text: &str) -> Cow<'_, str> {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    let unsafe_char = |c: char| {
        matches!(
            c.general_category(),
            GeneralCategory::Control
                | GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
    };
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `result` of creating pipe `name`, its error in the context "creating pipe
/// NAME" — or "creating the pipe" when the error names the pipe already, as the
/// library's errors mostly do, so that the name is said once.
pub(crate) fn creating<T>(result: io::Result<T>, name: &str) -> anyhow::Result<T> {
    in_context(result, name, "creating")
}

/// `result` of `doing` (a verb: "creating") pipe `name`, its error in the context
/// "DOING pipe NAME", or "DOING the pipe" when the error names the pipe already.
pub(crate) fn in_context<T>(result: io::Result<T>, name: &str, doing: &str) -> anyhow::Result<T> {
    result.map_err(|e| {
        let context = if e.to_string().contains(name) {
            format!("{doing} the pipe")
        } else {
            format!("{doing} pipe {name}")
        };
        anyhow::Error::new(e).context(context)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn terminal_safe_escapes_what_would_act_on_the_terminal() {
        assert_eq!(super::terminal_safe("plain text"), "plain text");
        // One field is one line: a newline in it would print a line of its own.
        assert_eq!(super::terminal_safe("a\nb"), "a\\u{a}b");
        assert_eq!(super::terminal_safe("\x1b[8mnpipe"), "\\u{1b}[8mnpipe");
        assert_eq!(super::terminal_safe("a\u{202E}b"), "a\\u{202e}b");
    }
}
