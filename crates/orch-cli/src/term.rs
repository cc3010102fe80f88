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
        let bytes = s.as_bytes();
        let mut start = 0;
        let mut i = 0;
        // Printable ASCII is never escaped: skip it a byte at a time (most
        // of a large JSON document), decode only the rest.
        while let Some(p) = bytes[i..].iter().position(|&b| !(0x20..0x7f).contains(&b)) {
            i += p;
            let Some(c) = s[i..].chars().next() else {
                break;
            };
            let next = i + c.len_utf8();
            if !is_unsafe(c) {
                i = next;
                continue;
            }
            if self.keep_newlines {
                if c == '\n' || c == '\t' {
                    i = next;
                    continue;
                }
                if c == '\r' {
                    match bytes.get(next) {
                        Some(b'\n') => {
                            i = next;
                            continue;
                        }
                        Some(_) => {}
                        None => {
                            self.out.write_all(&bytes[start..i])?;
                            self.pending_cr = true;
                            return Ok(());
                        }
                    }
                }
            }
            self.out.write_all(&bytes[start..i])?;
            self.escaped(c)?;
            start = next;
            i = next;
        }
        self.out.write_all(&bytes[start..])
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

/// A [`std::io::Write`] that escapes what it is given as [`print()`] does,
/// for a large document written piece by piece: it gathers [`CHUNK`] bytes,
/// then escapes them at once (a serializer writes a few bytes at a time); a
/// character cut in two between writes waits for its rest.
pub struct Escaping<W: std::io::Write> {
    out: Escaper<W>,
    pending: Vec<u8>,
}

/// How much [`Escaping`] gathers before it escapes and writes.
const CHUNK: usize = 1 << 16;

impl<W: std::io::Write> std::fmt::Debug for Escaping<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Escaping").finish_non_exhaustive()
    }
}

impl<W: std::io::Write> Escaping<W> {
    /// Escapes into `out` (newlines and tabs are kept).
    pub fn new(out: W) -> Self {
        Self {
            out: Escaper::new(out, true),
            pending: Vec::with_capacity(CHUNK),
        }
    }

    /// Writes what is pending and a final newline; gives back the writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.drain(true)?;
        self.out.finish(true)
    }

    /// Escapes and writes the whole characters of what is pending; at the
    /// end (`last`) a cut character too, as U+FFFD. Bytes that are not
    /// UTF-8 are written as U+FFFD.
    fn drain(&mut self, last: bool) -> std::io::Result<()> {
        let mut pending = std::mem::take(&mut self.pending);
        let mut at = 0;
        let keep_from = loop {
            match std::str::from_utf8(&pending[at..]) {
                Ok(s) => {
                    self.out.push(s)?;
                    break pending.len();
                }
                Err(e) => {
                    let good = at + e.valid_up_to();
                    // Valid UTF-8 up to `good`, by `valid_up_to`.
                    self.out
                        .push(std::str::from_utf8(&pending[at..good]).unwrap_or_default())?;
                    match e.error_len() {
                        None if !last => break good,
                        None => {
                            self.out.push("\u{fffd}")?;
                            break pending.len();
                        }
                        Some(n) => {
                            self.out.push("\u{fffd}")?;
                            at = good + n;
                        }
                    }
                }
            }
        };
        pending.drain(..keep_from);
        self.pending = pending;
        Ok(())
    }
}

impl<W: std::io::Write> std::io::Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= CHUNK {
            self.drain(false)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.drain(false)?;
        self.out.out.flush()
    }
}

/// Standard output, locked, buffered and escaped: what `orch run --json`
/// streams its report through.
pub type StdoutWriter = Escaping<std::io::BufWriter<std::io::StdoutLock<'static>>>;

/// Runs `write` on a [`StdoutWriter`] and finishes it with a newline; a
/// failure to write ends the process as [`print()`] does.
pub fn write_stdout(write: impl FnOnce(&mut StdoutWriter) -> std::io::Result<()>) {
    let mut out = Escaping::new(std::io::BufWriter::with_capacity(
        CHUNK,
        std::io::stdout().lock(),
    ));
    let done = write(&mut out)
        .and_then(|()| out.finish())
        .and_then(|mut w| w.flush());
    if let Err(e) = done {
        stdout_failed(&e);
    }
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

    #[test]
    fn a_writer_escapes_across_writes_and_keeps_cut_characters_whole() {
        use std::io::Write as _;
        let text = "{\"k\":\"a\u{1b}b \u{9b} \u{65e5}\u{672c} \r\n\"}";
        let bytes = text.as_bytes();
        // Written a byte at a time: every character is cut somewhere.
        let mut w = Escaping::new(Vec::new());
        for b in bytes {
            w.write_all(std::slice::from_ref(b)).expect("writes");
        }
        let out = w.finish().expect("finishes");
        let mut expected = escape(text).into_owned();
        expected.push('\n');
        assert_eq!(String::from_utf8(out).expect("UTF-8"), expected);
        // More than a chunk, bytes that are not UTF-8, a cut end.
        let mut w = Escaping::new(Vec::new());
        let long = "x".repeat(CHUNK + 3);
        w.write_all(long.as_bytes()).expect("writes");
        w.write_all(b"\xff\x1b").expect("writes");
        w.write_all(&"\u{65e5}".as_bytes()[..2]).expect("writes");
        let out = String::from_utf8(w.finish().expect("finishes")).expect("UTF-8");
        assert_eq!(out, format!("{long}\u{fffd}\\u001b\u{fffd}\n"));
        // A character cut where a chunk is escaped waits for its rest.
        let mut w = Escaping::new(Vec::new());
        let day = "\u{65e5}".as_bytes();
        let mut first = "y".repeat(CHUNK - 1).into_bytes();
        first.extend_from_slice(&day[..2]);
        w.write_all(&first).expect("writes");
        w.write_all(&day[2..]).expect("writes");
        let out = String::from_utf8(w.finish().expect("finishes")).expect("UTF-8");
        assert_eq!(out, format!("{}\u{65e5}\n", "y".repeat(CHUNK - 1)));
    }
}
