//! `code.stats`: files and code, comment and blank lines per language for a directory.
//!
//! Lines are classified by the language's comment syntax, found from the
//! file's extension: a blank line holds only whitespace; a comment line holds
//! only a comment (a line comment, or text inside a block comment); every
//! other line is code. A line with code and a trailing comment counts as code.
//! Files in no known language are not counted (they are listed under
//! `skipped`), nor are files larger than `max_file_size`, files that are not
//! UTF-8 text, hidden files and directories (unless `hidden: true`),
//! symbolic links (never followed, neither to files nor to directories) and
//! files with more than one hard link (a second name may be a file outside
//! the work directory, as `fs.read` says).
//!
//! The directory is walked through descriptors (see
//! [`crate::confined::Root::walk_tree`]): `path` is resolved beneath the work
//! directory without following links (absolute paths, `..` and links are
//! refused), every subdirectory is opened from its parent's descriptor and
//! every file read through its directory's, so nothing outside the work
//! directory is read, even while the tree changes.

use super::fs::{blocking, confined_error, work_root};
use crate::action::{Action, ActionContext, ActionError};
use crate::confined::{EntryKind, ErrorKind, WalkError};
use async_trait::async_trait;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A string literal's delimiters: text between them is code, whatever it holds.
struct Quote {
    open: &'static str,
    close: &'static str,
    /// Whether a backslash escapes the next character (`"a\"b"`).
    escape: bool,
    /// Whether the literal may go on past the end of a line; one that may not
    /// ends there when it is left open (a typo must not swallow the file).
    multiline: bool,
}

const fn quote(open: &'static str, close: &'static str, escape: bool, multiline: bool) -> Quote {
    Quote {
        open,
        close,
        escape,
        multiline,
    }
}

/// `"..."` and `'...'` with backslash escapes, each on one line (C, Java, JavaScript, ...).
const C_QUOTES: &[Quote] = &[quote("\"", "\"", true, false), quote("'", "'", true, false)];
/// Java, Kotlin, Scala, Swift: text blocks `"""..."""` too.
const JVM_QUOTES: &[Quote] = &[
    quote("\"\"\"", "\"\"\"", true, true),
    quote("\"", "\"", true, false),
    quote("'", "'", true, false),
];
/// JavaScript and TypeScript: template literals span lines.
const JS_QUOTES: &[Quote] = &[
    quote("`", "`", true, true),
    quote("\"", "\"", true, false),
    quote("'", "'", true, false),
];
/// Python (and TOML): triple-quoted strings span lines.
const TRIPLE_QUOTES: &[Quote] = &[
    quote("\"\"\"", "\"\"\"", true, true),
    quote("'''", "'''", true, true),
    quote("\"", "\"", true, false),
    quote("'", "'", true, false),
];
/// Shell-like: `'...'` has no escapes. Kept to one line: a heredoc's apostrophe must not open a string.
const SH_QUOTES: &[Quote] = &[
    quote("\"", "\"", true, false),
    quote("'", "'", false, false),
];
/// Only `"..."` (Haskell, where `'` is part of names).
const DQ_QUOTES: &[Quote] = &[quote("\"", "\"", true, false)];

/// A language's name, its file extensions and its lexical syntax: comments and string literals.
struct Lang {
    name: &'static str,
    exts: &'static [&'static str],
    line: &'static [&'static str],
    block: Option<(&'static str, &'static str)>,
    /// Whether block comments nest (Rust, Haskell).
    nested: bool,
    quotes: &'static [Quote],
    /// Rust's raw strings (`r#"..."#`) and char literals (`'"'`, told apart from lifetimes).
    rust: bool,
}

const C_LIKE: Option<(&str, &str)> = Some(("/*", "*/"));

const fn lang(
    name: &'static str,
    exts: &'static [&'static str],
    line: &'static [&'static str],
    block: Option<(&'static str, &'static str)>,
    quotes: &'static [Quote],
) -> Lang {
    Lang {
        name,
        exts,
        line,
        block,
        nested: false,
        quotes,
        rust: false,
    }
}

const LANGS: &[Lang] = &[
    Lang {
        nested: true,
        rust: true,
        ..lang(
            "Rust",
            &["rs"],
            &["//"],
            C_LIKE,
            &[quote("\"", "\"", true, true)],
        )
    },
    lang("Python", &["py", "pyi"], &["#"], None, TRIPLE_QUOTES),
    lang(
        "JavaScript",
        &["js", "mjs", "cjs", "jsx"],
        &["//"],
        C_LIKE,
        JS_QUOTES,
    ),
    lang(
        "TypeScript",
        &["ts", "tsx", "mts", "cts"],
        &["//"],
        C_LIKE,
        JS_QUOTES,
    ),
    lang("C", &["c", "h"], &["//"], C_LIKE, C_QUOTES),
    lang(
        "C++",
        &["cc", "cpp", "cxx", "hpp", "hh", "hxx"],
        &["//"],
        C_LIKE,
        C_QUOTES,
    ),
    lang(
        "Go",
        &["go"],
        &["//"],
        C_LIKE,
        &[
            quote("`", "`", false, true),
            quote("\"", "\"", true, false),
            quote("'", "'", true, false),
        ],
    ),
    lang("Java", &["java"], &["//"], C_LIKE, JVM_QUOTES),
    lang("Kotlin", &["kt", "kts"], &["//"], C_LIKE, JVM_QUOTES),
    lang("C#", &["cs"], &["//"], C_LIKE, C_QUOTES),
    lang("Swift", &["swift"], &["//"], C_LIKE, JVM_QUOTES),
    lang("Scala", &["scala"], &["//"], C_LIKE, JVM_QUOTES),
    lang("Ruby", &["rb"], &["#"], None, C_QUOTES),
    lang("Shell", &["sh", "bash", "zsh"], &["#"], None, SH_QUOTES),
    lang("Perl", &["pl", "pm"], &["#"], None, C_QUOTES),
    lang("R", &["r"], &["#"], None, C_QUOTES),
    lang("PHP", &["php"], &["//", "#"], C_LIKE, C_QUOTES),
    lang(
        "Lua",
        &["lua"],
        &["--"],
        Some(("--[[", "]]")),
        &[
            quote("[[", "]]", false, true),
            quote("\"", "\"", true, false),
            quote("'", "'", true, false),
        ],
    ),
    lang(
        "SQL",
        &["sql"],
        &["--"],
        C_LIKE,
        &[
            quote("'", "'", false, false),
            quote("\"", "\"", false, false),
        ],
    ),
    Lang {
        nested: true,
        ..lang("Haskell", &["hs"], &["--"], Some(("{-", "-}")), DQ_QUOTES)
    },
    lang("HTML", &["html", "htm"], &[], Some(("<!--", "-->")), &[]),
    lang("XML", &["xml", "svg"], &[], Some(("<!--", "-->")), &[]),
    lang("CSS", &["css", "scss", "less"], &[], C_LIKE, C_QUOTES),
    lang(
        "Markdown",
        &["md", "markdown"],
        &[],
        Some(("<!--", "-->")),
        &[],
    ),
    lang("YAML", &["yaml", "yml"], &["#"], None, SH_QUOTES),
    lang(
        "TOML",
        &["toml"],
        &["#"],
        None,
        &[
            quote("\"\"\"", "\"\"\"", true, true),
            quote("'''", "'''", false, true),
            quote("\"", "\"", true, false),
            quote("'", "'", false, false),
        ],
    ),
    lang(
        "JSON",
        &["json"],
        &[],
        None,
        &[quote("\"", "\"", true, false)],
    ),
    lang("Makefile", &["mk"], &["#"], None, &[]),
];

fn language(path: &Path) -> Option<&'static Lang> {
    let name = path.file_name()?.to_str()?;
    if name == "Makefile" || name == "makefile" {
        return LANGS.iter().find(|l| l.name == "Makefile");
    }
    if name == "Dockerfile" {
        return None;
    }
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    LANGS.iter().find(|l| l.exts.contains(&ext.as_str()))
}

/// Counts of one file or one language.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LineCounts {
    /// Files counted.
    pub files: u64,
    /// Lines with code.
    pub code: u64,
    /// Lines with only a comment.
    pub comment: u64,
    /// Lines with only whitespace.
    pub blank: u64,
}

impl LineCounts {
    fn add(&mut self, o: LineCounts) {
        self.files += o.files;
        self.code += o.code;
        self.comment += o.comment;
        self.blank += o.blank;
    }

    fn lines(self) -> u64 {
        self.code + self.comment + self.blank
    }

    fn to_json(self) -> Value {
        json!({"files": self.files, "lines": self.lines(), "code": self.code, "comment": self.comment, "blank": self.blank})
    }
}

/// Where the lexer is at the end of a line.
#[derive(Clone, Copy)]
enum State {
    Code,
    /// Inside a block comment, nested this deep.
    Block(u32),
    /// Inside a string literal.
    Str(&'static Quote),
    /// Inside a Rust raw string closed by `"` and this many `#`.
    Raw(usize),
}

/// The length of a Rust raw string's opening (`r"`, `r#"`, `br##"`, ...) at
/// the start of `rest`, and its number of `#`, when one starts there.
fn raw_string_open(rest: &[u8]) -> Option<(usize, usize)> {
    let after_r = match rest {
        [b'r', ..] => 1,
        [b'b' | b'c', b'r', ..] => 2,
        _ => return None,
    };
    let hashes = rest[after_r..].iter().take_while(|&&b| b == b'#').count();
    (rest.get(after_r + hashes) == Some(&b'"')).then_some((after_r + hashes + 1, hashes))
}

/// The length of a Rust char literal (`'a'`, `'"'`, `'\''`, `'\u{1F600}'`)
/// at the start of `rest` (which starts with `'`), or `None` for a lifetime or label.
fn char_literal(rest: &str) -> Option<usize> {
    let body = &rest[1..];
    if let Some(esc) = body.strip_prefix('\\') {
        // An escape: up to the next quote after the escaped character.
        let first = esc.chars().next()?;
        let after = &esc[first.len_utf8()..];
        return after.find('\'').map(|at| 2 + first.len_utf8() + at + 1);
    }
    let c = body.chars().next()?;
    body[c.len_utf8()..]
        .starts_with('\'')
        .then_some(1 + c.len_utf8() + 1)
}

/// Classifies the lines of `text` written in `lang`: a small lexer that knows
/// the language's comments and string literals, so that a comment opener
/// inside a string (`"/*"`) is text, and a comment opener inside a comment is
/// comment.
fn count_lines(text: &str, lang: &Lang) -> LineCounts {
    let mut c = LineCounts {
        files: 1,
        ..LineCounts::default()
    };
    let mut state = State::Code;
    for line in text.lines() {
        let bytes = line.as_bytes();
        let (mut has_code, mut has_comment) = match state {
            State::Code => (false, false),
            State::Block(_) => (false, true),
            State::Str(_) | State::Raw(_) => (true, false),
        };
        let mut i = 0;
        'line: while i < bytes.len() {
            let rest = &bytes[i..];
            match state {
                State::Block(depth) => {
                    let Some((open, close)) = lang.block else {
                        state = State::Code;
                        continue;
                    };
                    if rest.starts_with(close.as_bytes()) {
                        i += close.len();
                        state = if depth > 1 {
                            State::Block(depth - 1)
                        } else {
                            State::Code
                        };
                    } else if lang.nested && rest.starts_with(open.as_bytes()) {
                        i += open.len();
                        state = State::Block(depth + 1);
                    } else {
                        i += 1;
                    }
                }
                State::Str(q) => {
                    if q.escape && rest[0] == b'\\' {
                        i += 2;
                    } else if rest.starts_with(q.close.as_bytes()) {
                        i += q.close.len();
                        state = State::Code;
                    } else {
                        i += 1;
                    }
                }
                State::Raw(hashes) => {
                    if rest[0] == b'"'
                        && rest[1..]
                            .iter()
                            .take(hashes)
                            .filter(|&&b| b == b'#')
                            .count()
                            == hashes
                    {
                        i += 1 + hashes;
                        state = State::Code;
                    } else {
                        i += 1;
                    }
                }
                State::Code => {
                    if rest[0].is_ascii_whitespace() {
                        i += 1;
                        continue;
                    }
                    if let Some((open, _)) = lang.block {
                        if rest.starts_with(open.as_bytes()) {
                            has_comment = true;
                            i += open.len();
                            state = State::Block(1);
                            continue;
                        }
                    }
                    if lang.line.iter().any(|p| rest.starts_with(p.as_bytes())) {
                        has_comment = true;
                        break 'line;
                    }
                    has_code = true;
                    if lang.rust {
                        let ident_before =
                            i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
                        if !ident_before {
                            if let Some((len, hashes)) = raw_string_open(rest) {
                                i += len;
                                state = State::Raw(hashes);
                                continue;
                            }
                        }
                        if rest[0] == b'\'' {
                            // `i` is at an ASCII quote, so it is a char boundary.
                            i += char_literal(&line[i..]).unwrap_or(1);
                            continue;
                        }
                    }
                    if let Some(q) = lang
                        .quotes
                        .iter()
                        .find(|q| rest.starts_with(q.open.as_bytes()))
                    {
                        i += q.open.len();
                        state = State::Str(q);
                        continue;
                    }
                    i += 1;
                }
            }
        }
        if let State::Str(q) = state {
            if !q.multiline {
                state = State::Code;
            }
        }
        if has_code {
            c.code += 1;
        } else if has_comment {
            c.comment += 1;
        } else {
            c.blank += 1;
        }
    }
    c
}

fn patterns(params: &Value, key: &str) -> Result<Vec<glob::Pattern>, ActionError> {
    let list: Vec<&str> = match params.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str().ok_or_else(|| {
                    ActionError::invalid_parameters(format!(
                        "`{key}` must be a list of glob patterns (strings), found {v}"
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(ActionError::invalid_parameters(format!(
                "`{key}` must be a list of glob patterns, found {other}"
            )));
        }
    };
    list.into_iter()
        .map(|p| {
            glob::Pattern::new(p).map_err(|e| {
                ActionError::invalid_parameters(format!("`{key}`: bad glob pattern `{p}`: {e}"))
            })
        })
        .collect()
}

/// Whether `rel` (with `/` separators) matches one of `pats`; a pattern
/// without `/` also matches the file name alone (`*.py` matches `a/b.py`).
fn matches(pats: &[glob::Pattern], rel: &str) -> bool {
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: false,
        require_literal_leading_dot: false,
    };
    let name = rel.rsplit('/').next().unwrap_or(rel);
    pats.iter().any(|p| {
        p.matches_with(rel, opts) || (!p.as_str().contains('/') && p.matches_with(name, opts))
    })
}

fn size_param(params: &Value) -> Result<u64, ActionError> {
    const DEFAULT: u64 = 1024 * 1024;
    match params.get("max_file_size") {
        None | Some(Value::Null) => Ok(DEFAULT),
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
            ActionError::invalid_parameters(
                "`max_file_size` must be a non-negative number of bytes",
            )
        }),
        Some(Value::String(s)) => parse_size(s).ok_or_else(|| {
            ActionError::invalid_parameters(format!(
                "`max_file_size`: `{s}` is not a size; write e.g. 1048576, \"512KB\" or \"1MB\""
            ))
        }),
        Some(other) => Err(ActionError::invalid_parameters(format!(
            "`max_file_size` must be a number of bytes or a size like \"1MB\", found {other}"
        ))),
    }
}

/// `"1MB"`, `"512 KiB"`, `"100"` → bytes (K/M/G are powers of 1024, as the seed's configs mean them).
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits_end = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let n: f64 = s[..digits_end].parse().ok()?;
    let unit = s[digits_end..].trim().to_ascii_lowercase();
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    let v = n * mult as f64;
    (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v as u64)
}

/// `code.stats {path = ".", include, exclude, max_file_size = "1MB", hidden = false}` →
/// `{path, files, lines, code, comment, blank, languages: {NAME: {files, lines, code, comment, blank}},
/// code_by_language: {NAME: code lines}, skipped: {unknown_language, too_large, not_text}}`.
///
/// `include`/`exclude` are glob patterns matched against the path relative to
/// `path` (`*` also crosses `/`; a pattern without `/` also matches the bare
/// file name): with `include`, only matching files count; `exclude` wins.
#[derive(Debug)]
pub struct Stats;

#[async_trait]
impl Action for Stats {
    fn spec(&self) -> Option<&'static orch_model::ActionSpec> {
        Some(&super::specs::STATS)
    }

    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let rel = params
            .get("path")
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    ActionError::invalid_parameters("`path` must be a relative directory path")
                })
            })
            .transpose()?
            .unwrap_or_else(|| ".".to_owned());
        let root = work_root(ctx)?;
        root.check(&rel)
            .map_err(|e| confined_error("cannot read directory", &rel, &e))?;
        let include = patterns(&params, "include")?;
        let exclude = patterns(&params, "exclude")?;
        let max_size = size_param(&params)?;
        let hidden = params
            .get("hidden")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let cancel = ctx.cancel.clone();
        blocking(move || {
            let mut by_lang: BTreeMap<&'static str, LineCounts> = BTreeMap::new();
            let (mut unknown, mut too_large, mut not_text) = (0u64, 0u64, 0u64);
            let walked = root.walk_tree(&rel, |entry| {
                if cancel.is_cancelled() {
                    return Err(ActionError::retryable("Cancelled", "code.stats was cancelled"));
                }
                if !hidden && entry.name.as_bytes().starts_with(b".") {
                    return Ok(false);
                }
                match entry.kind {
                    EntryKind::Dir => return Ok(true),
                    // Links (never followed) and special files are not counted.
                    EntryKind::Symlink | EntryKind::Other => return Ok(false),
                    EntryKind::File => {}
                }
                let inner = entry.path.to_string_lossy();
                if (!include.is_empty() && !matches(&include, &inner)) || matches(&exclude, &inner) {
                    return Ok(false);
                }
                let Some(lang) = language(entry.path) else {
                    unknown += 1;
                    return Ok(false);
                };
                let mut file = match entry.open_file() {
                    Ok(f) => f,
                    // Hard-linked files are skipped as links are (a second name may be a
                    // file outside the work directory); so is a file replaced by a link
                    // or by something else since its directory was read.
                    Err(e) if e.is_escape() || matches!(e.kind, ErrorKind::NotRegular(_)) => {
                        return Ok(false);
                    }
                    Err(_) => {
                        not_text += 1;
                        return Ok(false);
                    }
                };
                let len = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
                if len > max_size {
                    too_large += 1;
                    return Ok(false);
                }
                let mut text = String::new();
                if std::io::Read::read_to_string(&mut file, &mut text).is_err() {
                    not_text += 1;
                    return Ok(false);
                }
                by_lang
                    .entry(lang.name)
                    .or_default()
                    .add(count_lines(&text, lang));
                Ok(false)
            });
            match walked {
                Ok(()) => {}
                Err(WalkError::Visit(e)) => return Err(e),
                Err(WalkError::Walk(e)) => {
                    return Err(confined_error("cannot read directory", &rel, &e));
                }
            }
            let mut total = LineCounts::default();
            let mut languages = Map::new();
            let mut code_by_language = Map::new();
            for (name, c) in &by_lang {
                total.add(*c);
                languages.insert((*name).to_owned(), c.to_json());
                code_by_language.insert((*name).to_owned(), json!(c.code));
            }
            Ok(json!({
                "path": rel,
                "files": total.files,
                "lines": total.lines(),
                "code": total.code,
                "comment": total.comment,
                "blank": total.blank,
                "languages": languages,
                "code_by_language": code_by_language,
                "skipped": {"unknown_language": unknown, "too_large": too_large, "not_text": not_text},
            }))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lang(name: &str) -> &'static Lang {
        LANGS.iter().find(|l| l.name == name).expect("language")
    }

    #[test]
    fn rust_lines_are_classified() {
        let src = "// header\n\nfn main() { // trailing\n    /* block\n       still */\n    let x = 1; /* c */\n}\n";
        let c = count_lines(src, lang("Rust"));
        assert_eq!((c.code, c.comment, c.blank), (3, 3, 1), "{c:?}");
    }

    #[test]
    fn python_and_html_comments() {
        let c = count_lines("# a\nx = 1\n\n  # b\n", lang("Python"));
        assert_eq!((c.code, c.comment, c.blank), (1, 2, 1));
        let c = count_lines("<!-- a\nb -->\n<p>x</p>\n", lang("HTML"));
        assert_eq!((c.code, c.comment, c.blank), (1, 2, 0));
    }

    #[test]
    fn code_after_a_block_comment_on_one_line_is_code() {
        let c = count_lines("/* a */ int x;\n", lang("C"));
        assert_eq!((c.code, c.comment), (1, 0));
    }

    /// (code, comment, blank) of `src` in language `name`.
    fn count(src: &str, name: &str) -> (u64, u64, u64) {
        let c = count_lines(src, lang(name));
        (c.code, c.comment, c.blank)
    }

    #[test]
    fn a_comment_opener_inside_a_string_is_text() {
        // Issue 10: `"/*"` opened a block comment, and the lines after it counted as comments.
        let src = "let open = \"/*\";\nlet x = 1;\nlet y = 2;\n// done\n";
        assert_eq!(count(src, "Rust"), (3, 1, 0));
        let src = "const s = '/*';\nlet x = \"//\"; /* c */\nf();\n";
        assert_eq!(count(src, "JavaScript"), (3, 0, 0));
        assert_eq!(count("char *s = \"/*\";\nint x;\n", "C"), (2, 0, 0));
        assert_eq!(count("a = \"#\"\nb = 1\n", "Python"), (2, 0, 0));
        // An escaped quote does not end the string.
        assert_eq!(
            count("let s = \"\\\" /*\";\nlet t = 1;\n", "Rust"),
            (2, 0, 0)
        );
    }

    #[test]
    fn a_string_that_spans_lines_is_code_where_the_language_allows_it() {
        let src = "let s = \"first\n// not a comment\n/* nor this\n\";\n// a comment\n";
        assert_eq!(count(src, "Rust"), (4, 1, 0));
        let src = "doc = \"\"\"\n# not a comment\n\"\"\"\n# a comment\n";
        assert_eq!(count(src, "Python"), (3, 1, 0));
        let src = "const t = `\n// text\n`;\n// comment\n";
        assert_eq!(count(src, "JavaScript"), (3, 1, 0));
        // Where it does not, a quote left open ends with its line.
        assert_eq!(count("x = 'oops\n# comment\n", "Python"), (1, 1, 0));
        assert_eq!(count("echo don't\n# comment\n", "Shell"), (1, 1, 0));
    }

    #[test]
    fn rust_raw_strings_chars_and_lifetimes() {
        let src = "let r = r#\"a \" /* b\"#;\nlet q = '\"';\nlet e = '\\'';\nfn f<'a>(x: &'a str) {}\n// c\n";
        assert_eq!(count(src, "Rust"), (4, 1, 0));
        // `'"'` must not open a string that hides the comment below.
        assert_eq!(count("let q = '\"';\n/* c */\n", "Rust"), (1, 1, 0));
        // Nested block comments close at the outer end.
        assert_eq!(count("/* a /* b */ still */\nx();\n", "Rust"), (1, 1, 0));
        assert_eq!(count("/* a /* b */\nx();\n", "C"), (1, 1, 0));
    }

    #[test]
    fn lua_block_comments_and_long_strings() {
        let src = "--[[ a\nb ]]\nlocal s = [[\n-- text\n]]\n-- c\n";
        assert_eq!(count(src, "Lua"), (3, 3, 0));
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1MB"), Some(1 << 20));
        assert_eq!(parse_size("512 KiB"), Some(512 << 10));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("1.5k"), Some(1536));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("1TB"), None);
    }

    #[test]
    fn globs_match_paths_and_names() {
        let p = |s: &str| vec![glob::Pattern::new(s).expect("pattern")];
        assert!(matches(&p("*.py"), "a/b/c.py"));
        assert!(!matches(&p("*.py"), "a/b/c.rs"));
        assert!(matches(&p("*/node_modules/*"), "web/node_modules/x.js"));
        assert!(!matches(&p("src/*.rs"), "lib/x.rs"));
    }
}
