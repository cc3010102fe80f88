//! The printing layer: everything `orch` prints goes through here.
//!
//! - Control characters are shown escaped, as `\u001b`: orch prints values
//!   it did not write itself (parameter values, step errors, results, step
//!   output, file names, keys), and a value must never drive the terminal
//!   (clear the screen, retitle the window, fake a line). Escaped are the C0
//!   controls except newline and tab (and a carriage return right before a
//!   newline), DEL, the C1 controls, and the Unicode bidirectional overrides
//!   and line separators. The form is JSON's, so a JSON document printed
//!   through here stays valid JSON that means the same.
//! - A closed standard output (`orch runs list | head -1`) ends orch quietly
//!   with [`EXIT_PIPE`], as Unix tools end on SIGPIPE; a closed standard error
//!   is ignored (there is nowhere left to say anything).
//!
//! `main.rs` routes `println!`, `print!`, `eprintln!` and `eprint!` of this
//! crate here, so no call site can forget.

use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;

/// The exit code after standard output was closed by its reader: 128 +
/// SIGPIPE, what a shell shows for a tool that SIGPIPE ended.
pub const EXIT_PIPE: i32 = 141;

/// Whether `c` is shown escaped (newline and tab are decided by the caller).
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Writes what it is given to `out` with control characters escaped (a
/// `fmt::Write`, so that `format_args!` streams through it: a large JSON
/// document is never copied to be escaped).
struct Escaper<W> {
    out: W,
    /// Newline and tab pass (and a carriage return right before a newline).
    keep_newlines: bool,
    /// A carriage return ended the last piece: what comes next decides.
    pending_cr: bool,
    error: Option<std::io::Error>,
}

impl<W: std::io::Write> Escaper<W> {
    fn new(out: W, keep_newlines: bool) -> Self {
        Self {
            out,
            keep_newlines,
            pending_cr: false,
            error: None,
        }
    }

    fn escaped(&mut self, c: char) -> std::io::Result<()> {
        // Every escaped character is in the Basic Multilingual Plane.
        write!(self.out, "\\u{:04x}", u32::from(c))
    }

    fn push(&mut self, s: &str) -> std::io::Result<()> {
        if std::mem::take(&mut self.pending_cr) {
            if s.starts_with('\n') {
                self.out.write_all(b"\r")?;
            } else {
                self.escaped('\r')?;
            }
        }
        let mut start = 0;
        let mut chars = s.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if !is_unsafe(c) {
                continue;
            }
            if self.keep_newlines {
                if c == '\n' || c == '\t' {
                    continue;
                }
                if c == '\r' {
                    match chars.peek() {
                        Some((_, '\n')) => continue,
                        Some(_) => {}
                        None => {
                            self.out.write_all(&s.as_bytes()[start..i])?;
                            self.pending_cr = true;
                            return Ok(());
                        }
                    }
                }
            }
            self.out.write_all(&s.as_bytes()[start..i])?;
            self.escaped(c)?;
            start = i + c.len_utf8();
        }
        self.out.write_all(&s.as_bytes()[start..])
    }

    /// Ends the text; `newline` adds one.
    fn finish(mut self, newline: bool) -> std::io::Result<W> {
        if std::mem::take(&mut self.pending_cr) {
            if newline {
                self.out.write_all(b"\r")?;
            } else {
                self.escaped('\r')?;
            }
        }
        if newline {
            self.out.write_all(b"\n")?;
        }
        Ok(self.out)
    }
}

impl<W: std::io::Write> fmt::Write for Escaper<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s).map_err(|e| {
            self.error = Some(e);
            fmt::Error
        })
    }
}

/// Writes `args` (and a newline), escaped, to `out`.
fn write_escaped(
    out: impl std::io::Write,
    args: fmt::Arguments<'_>,
    keep_newlines: bool,
    newline: bool,
) -> std::io::Result<()> {
    let mut e = Escaper::new(out, keep_newlines);
    if fmt::write(&mut e, args).is_err() {
        return Err(e
            .error
            .take()
            .unwrap_or_else(|| std::io::Error::other("a value could not be formatted")));
    }
    e.finish(newline).map(drop)
}

fn escape_with(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    let mut chars = s.chars().peekable();
    let mut clean = true;
    while let Some(c) = chars.next() {
        let kept =
            keep_newlines && (c == '\n' || c == '\t' || (c == '\r' && chars.peek() == Some(&'\n')));
        if is_unsafe(c) && !kept {
            clean = false;
            break;
        }
    }
    if clean {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len() + 16);
    // Writing to a Vec cannot fail; the pieces are whole characters.
    let _ = write_escaped(&mut out, format_args!("{s}"), keep_newlines, false);
    Cow::Owned(
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

/// `s` on one line: every control character escaped, newlines too (for a
/// table cell or a one-line field).
#[must_use]
pub fn escape_line(s: &str) -> Cow<'_, str> {
    escape_with(s, false)
}

/// Which stream [`print()`] writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Out,
    /// Standard error.
    Err,
}

/// Writes `args` (and a newline when `newline`), escaped, to `stream`.
///
/// A broken pipe on standard output ends the process with [`EXIT_PIPE`];
/// any other failure to write standard output ends it with 1 after one line
/// on standard error. Failures to write standard error are ignored.
pub fn print(stream: Stream, args: fmt::Arguments<'_>, newline: bool) {
    match stream {
        Stream::Out => {
            let result = {
                let mut out = std::io::stdout().lock();
                write_escaped(&mut out, args, true, newline).and_then(|()| {
                    // Whole lines reach a pipe at once; a partial one at exit.
                    if newline { out.flush() } else { Ok(()) }
                })
            };
            if let Err(e) = result {
                stdout_failed(&e);
            }
        }
        Stream::Err => {
            // A message in one write, as std's `eprintln!` would not.
            let mut text = Vec::new();
            let _ = write_escaped(&mut text, args, true, newline);
            let _ = std::io::stderr().lock().write_all(&text);
        }
    }
}

/// Writes `bytes` as they are (`orch logs --raw`, asked for explicitly),
/// with [`print()`]'s handling of a closed pipe.
pub fn print_raw(stream: Stream, bytes: &[u8]) {
    match stream {
        Stream::Out => {
            let result = {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes).and_then(|()| out.flush())
            };
            if let Err(e) = result {
                stdout_failed(&e);
            }
        }
        Stream::Err => {
            let _ = std::io::stderr().lock().write_all(bytes);
        }
    }
}

/// Standard output as a buffered [`std::io::Write`], escaped as [`print()`]
/// escapes: for a large document written piece by piece (`orch run
/// --json` streams its report through it, never holding it whole).
/// [`StdoutWriter::finish`] ends it with a newline; a failure to write ends
/// the process as [`print()`] does.
pub struct StdoutWriter {
    out: Escaper<std::io::BufWriter<std::io::StdoutLock<'static>>>,
    /// The start of a character that the last write cut in two.
    partial: Vec<u8>,
}

impl std::fmt::Debug for StdoutWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StdoutWriter").finish_non_exhaustive()
    }
}

impl StdoutWriter {
    /// Standard output, locked for the writer's life, with a 64 KiB buffer.
    #[must_use]
    pub fn new() -> Self {
        Self {
            out: Escaper::new(
                std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock()),
                true,
            ),
            partial: Vec::new(),
        }
    }

    /// Writes the final newline and flushes.
    pub fn finish(mut self) {
        let result = std::mem::take(&mut self.partial);
        let done = self
            .push_lossy(&result)
            .and_then(|()| self.out.finish(true))
            .and_then(|mut w| w.flush());
        if let Err(e) = done {
            stdout_failed(&e);
        }
    }

    fn push_lossy(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(bytes);
        self.out.push(&text)
    }

    /// Escapes and writes the whole characters of `bytes` (after what the
    /// last write left), keeping a character cut at the end for the next.
    fn write_text(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.partial.is_empty() {
            return self.write_whole(bytes);
        }
        let mut joined = std::mem::take(&mut self.partial);
        joined.extend_from_slice(bytes);
        self.write_whole(&joined)
    }

    fn write_whole(&mut self, mut rest: &[u8]) -> std::io::Result<()> {
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => return self.out.push(s),
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // The prefix is valid UTF-8 by `valid_up_to`.
                    self.out
                        .push(std::str::from_utf8(good).unwrap_or_default())?;
                    match e.error_len() {
                        // A character cut at the end: wait for its rest.
                        None => {
                            self.partial = bad.to_vec();
                            return Ok(());
                        }
                        Some(n) => {
                            self.out.push("\u{fffd}")?;
                            rest = &bad[n..];
                        }
                    }
                }
            }
        }
    }
}

impl Default for StdoutWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl std::io::Write for StdoutWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_text(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.out.flush()
    }
}

/// Runs `write` on a [`StdoutWriter`] and finishes it; a failure to write
/// ends the process as [`print()`] does.
pub fn write_stdout(write: impl FnOnce(&mut StdoutWriter) -> std::io::Result<()>) {
    let mut out = StdoutWriter::new();
    if let Err(e) = write(&mut out) {
        stdout_failed(&e);
    }
    out.finish();
}

/// Ends the process after standard output failed.
fn stdout_failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(EXIT_PIPE);
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "orch: cannot write to standard output: {e}"
    );
    std::process::exit(i32::from(crate::exit::FAILED));
}

/// A table: a header and rows of cells, columns sized to their widest cell
/// as a terminal shows it (an ideograph takes two columns), two spaces
/// apart. Every cell is escaped onto one line.
///
/// Rows are either added with [`Table::row`] (small tables), or streamed
/// twice from an iterator by [`Table::print_rows`], once to measure and
/// once to print, so that a run of a million steps prints its table
/// without holding a second copy of it.
#[derive(Debug)]
pub struct Table {
    header: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

/// The width of `s` on a terminal.
fn width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

impl Table {
    /// A table with these column headers.
    #[must_use]
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            right: vec![false; header.len()],
            rows: Vec::new(),
        }
    }

    /// Aligns these columns (0-based) to the right.
    #[must_use]
    pub fn right(mut self, columns: &[usize]) -> Self {
        for &i in columns {
            if let Some(r) = self.right.get_mut(i) {
                *r = true;
            }
        }
        self
    }

    /// Adds a row (kept until [`Table::print`]).
    pub fn row<I, T>(&mut self, cells: I)
    where
        I: IntoIterator<Item = T>,
        T: fmt::Display,
    {
        self.rows.push(
            cells
                .into_iter()
                .map(|c| escape_line(&c.to_string()).into_owned())
                .collect(),
        );
    }

    /// Renders the header, the added rows, then `more`, a line at a time.
    fn render<I, R, T>(&self, more: I, mut emit: impl FnMut(&str))
    where
        I: Iterator<Item = R> + Clone,
        R: IntoIterator<Item = T>,
        T: fmt::Display,
    {
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        let mut measure = |i: usize, cell: &str| {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(width(cell));
            }
        };
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                measure(i, cell);
            }
        }
        for row in more.clone() {
            for (i, cell) in row.into_iter().enumerate() {
                measure(i, &escape_line(&cell.to_string()));
            }
        }
        let mut line = String::new();
        let mut put = |cells: &mut dyn Iterator<Item = Cow<'_, str>>| {
            line.clear();
            for (i, cell) in cells.enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(width(&cell));
                let right = self.right.get(i).copied().unwrap_or(false);
                if right {
                    line.extend(std::iter::repeat_n(' ', pad));
                }
                line.push_str(&cell);
                if !right {
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            emit(line.trim_end());
        };
        put(&mut self.header.iter().map(|h| Cow::Borrowed(h.as_str())));
        for row in &self.rows {
            put(&mut row.iter().map(|c| Cow::Borrowed(c.as_str())));
        }
        for row in more {
            put(&mut row
                .into_iter()
                .map(|c| Cow::Owned(escape_line(&c.to_string()).into_owned())));
        }
    }

    /// The table's lines (header and added rows), without trailing spaces.
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.render(std::iter::empty::<[&str; 0]>(), |l| out.push(l.to_owned()));
        out
    }

    /// Prints the header and the added rows to standard output.
    pub fn print(&self) {
        self.print_rows(std::iter::empty::<[&str; 0]>());
    }

    /// Prints the header, the added rows and `rows` to standard output;
    /// `rows` is iterated twice.
    pub fn print_rows<I, R, T>(&self, rows: I)
    where
        I: Iterator<Item = R> + Clone,
        R: IntoIterator<Item = T>,
        T: fmt::Display,
    {
        self.render(rows, |l| print(Stream::Out, format_args!("{l}"), true));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`print()`] shows of `s`.
    fn escape(s: &str) -> Cow<'_, str> {
        escape_with(s, true)
    }

    #[test]
    fn control_characters_are_escaped_and_text_is_kept() {
        let hostile = "x\u{1b}[2J\u{1b}]0;pwned\u{7}y";
        assert_eq!(escape(hostile), "x\\u001b[2J\\u001b]0;pwned\\u0007y");
        assert_eq!(
            escape("a\u{7f}b\u{9b}c\u{202e}d"),
            "a\\u007fb\\u009bc\\u202ed"
        );
        assert_eq!(
            escape("two\nlines\tand\r\nmore\rover"),
            "two\nlines\tand\r\nmore\\u000dover"
        );
        assert_eq!(escape_line("two\nlines\t"), "two\\u000alines\\u0009");
        assert!(matches!(escape("plain – ünïcode 日本"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_carriage_return_is_judged_by_what_follows_it_in_the_next_piece() {
        let mut out = Vec::new();
        let (a, b, c) = ("one\r", "\ntwo\r", "three\r");
        write_escaped(&mut out, format_args!("{a}{b}{c}"), true, true).expect("writes");
        assert_eq!(out, b"one\r\ntwo\\u000dthree\r\n");
    }

    #[test]
    fn escaped_json_is_still_the_same_json() {
        let v = serde_json::json!({"k\u{1b}": "a\u{9b}b\u{7f}\u{202e}\n"});
        let text = serde_json::to_string_pretty(&v).expect("serializes");
        let shown = escape(&text);
        assert!(!shown.contains(['\u{1b}', '\u{9b}', '\u{7f}', '\u{202e}']));
        let back: serde_json::Value = serde_json::from_str(&shown).expect("still JSON");
        assert_eq!(back, v);
    }

    #[test]
    fn table_columns_fit_wide_values() {
        let mut t = Table::new(&["NAME", "N", "NOTE"]).right(&[1]);
        t.row(["日本語の名前", "7", "x"]);
        t.row(["a\u{1b}b", "12", ""]);
        let lines = t.lines();
        // Six characters two columns wide each: the name column is 12 wide.
        assert_eq!(lines[0], "NAME           N  NOTE");
        assert_eq!(lines[1], "日本語の名前   7  x");
        assert_eq!(lines[2], "a\\u001bb      12");
    }

    #[test]
    fn streamed_rows_are_measured_before_they_are_printed() {
        let t = Table::new(&["A", "B"]).right(&[0]);
        let rows = ["1", "22", "333"].iter().map(|n| [*n, "x"]);
        let mut out = Vec::new();
        t.render(rows, |l| out.push(l.to_owned()));
        assert_eq!(out, ["  A  B", "  1  x", " 22  x", "333  x"]);
    }
}
