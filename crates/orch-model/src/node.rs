//! A format-neutral document tree with source positions, built from JSON, YAML or TOML.
//!
//! Definitions are decoded from this tree rather than straight through serde so
//! that decoding can report *every* problem at once, each with its path and its
//! line and column, and so that all three formats share one decoder and one set
//! of limits.

use crate::limits::Limits;
use std::borrow::Cow;

/// A position in a source text: 1-based line and column (columns count
/// characters). `Pos::UNKNOWN` (0, 0) when a format cannot tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// 1-based line, 0 when unknown.
    pub line: u32,
    /// 1-based column in characters, 0 when unknown.
    pub col: u32,
}

impl Pos {
    /// The position of something whose place in the source is not known.
    pub const UNKNOWN: Pos = Pos { line: 0, col: 0 };

    /// A known position.
    pub fn new(line: u32, col: u32) -> Self {
        Self { line, col }
    }

    /// Whether the position is known.
    pub fn is_known(&self) -> bool {
        self.line != 0
    }
}

/// One value of a parsed document and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node<'a> {
    /// Where the value starts in the source.
    pub pos: Pos,
    /// The value.
    pub value: NodeValue<'a>,
}

/// The value of a [`Node`]. Maps keep their entries in source order, duplicates
/// included, so that the decoder can report a duplicate key where it stands.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue<'a> {
    /// `null`, YAML `~` or an empty YAML value.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer that fits `i64`.
    Int(i64),
    /// A non-negative integer above `i64::MAX`.
    UInt(u64),
    /// A floating-point number (YAML and TOML can spell NaN and infinities).
    Float(f64),
    /// A string (TOML date-times arrive as their text); borrowed from the
    /// source text where no escape had to be decoded.
    Str(Cow<'a, str>),
    /// A sequence.
    Seq(Vec<Node<'a>>),
    /// A mapping with string keys, in source order.
    Map(Vec<(Key<'a>, Node<'a>)>),
}

/// A mapping key and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key<'a> {
    /// The key's text.
    pub name: Cow<'a, str>,
    /// Where the key starts.
    pub pos: Pos,
}

/// The three definition formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// JSON (`.json`).
    Json,
    /// YAML (`.yaml`, `.yml`).
    Yaml,
    /// TOML (`.toml`).
    Toml,
}

/// Why a document could not be parsed: one message and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// What is wrong, as a sentence fragment without the position.
    pub message: String,
    /// Where, when known.
    pub pos: Pos,
}

impl Format {
    /// The format of a file, by its extension (case-insensitive).
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            "toml" => Some(Format::Toml),
            _ => None,
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(Format::Json),
            "yaml" | "yml" => Ok(Format::Yaml),
            "toml" => Ok(Format::Toml),
            _ => Err(format!(
                "`{s}` is not a definition format; expected json, yaml or toml"
            )),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Json => "JSON",
            Format::Yaml => "YAML",
            Format::Toml => "TOML",
        })
    }
}

impl Node<'_> {
    /// A short name of the value's kind, for messages.
    pub fn kind_name(&self) -> &'static str {
        match self.value {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "boolean",
            NodeValue::Int(_) | NodeValue::UInt(_) => "integer",
            NodeValue::Float(_) => "number",
            NodeValue::Str(_) => "string",
            NodeValue::Seq(_) => "list",
            NodeValue::Map(_) => "map",
        }
    }

    /// Converts the tree to JSON. A later duplicate key replaces an earlier one.
    ///
    /// # Errors
    /// A NaN or infinite number, which JSON cannot hold, with its position.
    pub fn into_json(self) -> Result<serde_json::Value, (Pos, String)> {
        use serde_json::Value;
        Ok(match self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(b),
            NodeValue::Int(i) => Value::from(i),
            NodeValue::UInt(u) => Value::from(u),
            NodeValue::Float(f) => match serde_json::Number::from_f64(f) {
                Some(n) => Value::Number(n),
                None => return Err((self.pos, non_finite_value(f))),
            },
            NodeValue::Str(s) => Value::String(s.into_owned()),
            NodeValue::Seq(items) => Value::Array(
                items
                    .into_iter()
                    .map(Node::into_json)
                    .collect::<Result<_, _>>()?,
            ),
            NodeValue::Map(entries) => {
                let mut m = serde_json::Map::with_capacity(entries.len());
                for (k, v) in entries {
                    m.insert(k.name.into_owned(), v.into_json()?);
                }
                Value::Object(m)
            }
        })
    }
}

/// Parses a document in `format` into a [`Node`] tree, enforcing the nesting
/// depth, string size and (for YAML) alias expansion limits while parsing.
///
/// # Errors
/// The first syntax error or exceeded limit, with its position.
pub fn parse<'a>(text: &'a str, format: Format, limits: &Limits) -> Result<Node<'a>, ParseError> {
    parse_with_step_sink(text, format, limits, None)
}

/// Like [`parse`]; for JSON, each element of the top-level `steps` list goes
/// to `sink` as soon as it is parsed (see `json::parse_streaming`).
pub(crate) fn parse_with_step_sink<'a>(
    text: &'a str,
    format: Format,
    limits: &Limits,
    sink: Option<&mut dyn FnMut(Node<'a>)>,
) -> Result<Node<'a>, ParseError> {
    if let (Format::Json, Some(sink)) = (format, sink) {
        return json::parse_streaming(text, limits, Some(sink));
    }
    match format {
        Format::Json => json::parse(text, limits),
        Format::Yaml => yaml::parse(text, limits),
        Format::Toml => toml_doc::parse(text, limits),
    }
}

fn depth_error(limits: &Limits) -> String {
    format!(
        "nesting deeper than {} levels (limit max_depth)",
        limits.max_depth
    )
}

fn string_error(len: usize, limits: &Limits) -> String {
    format!(
        "a string of {len} bytes exceeds the limit of {} bytes (limit max_string_bytes)",
        limits.max_string_bytes
    )
}

/// Maps byte offsets to 1-based line and character column.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Self { starts }
    }

    fn pos(&self, text: &str, offset: usize) -> Pos {
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let end = offset.min(text.len());
        let col = text
            .get(start..end)
            .map_or(end - start, |s| s.chars().count())
            + 1;
        Pos::new(
            u32::try_from(line).unwrap_or(u32::MAX),
            u32::try_from(col).unwrap_or(u32::MAX),
        )
    }
}

/// The hand-written JSON parser: iterative (an explicit stack, so no input can
/// overflow the call stack), byte-oriented, and exact about positions.
mod json {
    use super::{Key, Node, NodeValue, ParseError, Pos, depth_error, string_error};
    use crate::limits::Limits;
    use std::borrow::Cow;

    struct P<'a> {
        text: &'a str,
        b: &'a [u8],
        i: usize,
        line: u32,
        line_start: usize,
        // Lazily advanced column cache for the current line: (byte, column).
        col_byte: usize,
        col: u32,
    }

    enum Frame<'a> {
        Arr {
            pos: Pos,
            items: Vec<Node<'a>>,
        },
        Obj {
            pos: Pos,
            entries: Vec<(Key<'a>, Node<'a>)>,
            key: Option<Key<'a>>,
        },
    }

    impl<'a> P<'a> {
        fn pos_at(&mut self, byte: usize) -> Pos {
            if self.col_byte < self.line_start || byte < self.col_byte {
                self.col_byte = self.line_start;
                self.col = 1;
            }
            let chars = self.b[self.col_byte..byte]
                .iter()
                .filter(|&&c| (c & 0xC0) != 0x80)
                .count();
            self.col = self
                .col
                .saturating_add(u32::try_from(chars).unwrap_or(u32::MAX));
            self.col_byte = byte;
            Pos::new(self.line, self.col)
        }

        fn pos(&mut self) -> Pos {
            self.pos_at(self.i)
        }

        fn err(&mut self, msg: impl Into<String>) -> ParseError {
            let pos = self.pos();
            ParseError {
                message: msg.into(),
                pos,
            }
        }

        fn peek(&self) -> Option<u8> {
            self.b.get(self.i).copied()
        }

        fn ws(&mut self) {
            while let Some(&c) = self.b.get(self.i) {
                match c {
                    b' ' | b'\t' | b'\r' => self.i += 1,
                    b'\n' => {
                        self.i += 1;
                        self.line = self.line.saturating_add(1);
                        self.line_start = self.i;
                    }
                    _ => break,
                }
            }
        }

        fn found(&self) -> String {
            match self.text.get(self.i..).and_then(|s| s.chars().next()) {
                Some(c) => format!("`{}`", c.escape_default()),
                None => "the end of the input".into(),
            }
        }

        fn literal(
            &mut self,
            word: &str,
            value: NodeValue<'a>,
        ) -> Result<NodeValue<'a>, ParseError> {
            if self.b[self.i..].starts_with(word.as_bytes()) {
                self.i += word.len();
                Ok(value)
            } else {
                Err(self.err(format!("expected a value, found {}", self.found())))
            }
        }

        fn hex4(&mut self) -> Result<u32, ParseError> {
            let Some(h) = self.text.get(self.i..self.i + 4) else {
                return Err(self.err("incomplete \\u escape: expected 4 hex digits"));
            };
            let v = u32::from_str_radix(h, 16).map_err(|_| {
                self.err(format!(
                    "invalid \\u escape `\\u{h}`: expected 4 hex digits"
                ))
            })?;
            if !h.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(self.err(format!("invalid \\u escape `\\u{h}`")));
            }
            self.i += 4;
            Ok(v)
        }

        fn string(&mut self, limits: &Limits) -> Result<Cow<'a, str>, ParseError> {
            let start = self.i;
            self.i += 1; // the opening quote
            let mut out: Option<String> = None;
            let mut run = self.i;
            loop {
                // Skip plain bytes in one tight loop; stop at a quote, a
                // backslash or a control character.
                let plain = self.b[self.i..]
                    .iter()
                    .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                    .unwrap_or(self.b.len() - self.i);
                self.i += plain;
                let len = out.as_ref().map_or(0, String::len) + (self.i - run);
                if len > limits.max_string_bytes {
                    let pos = self.pos_at(start);
                    // Report the real size only when it is cheap to know; the limit is what matters.
                    return Err(ParseError {
                        message: string_error(len, limits),
                        pos,
                    });
                }
                let Some(&c) = self.b.get(self.i) else {
                    let pos = self.pos_at(start);
                    return Err(ParseError {
                        message: "unexpected end of input inside a string".into(),
                        pos,
                    });
                };
                match c {
                    b'"' => {
                        let text: &'a str = self.text;
                        let s = match out {
                            Some(mut s) => {
                                s.push_str(&text[run..self.i]);
                                Cow::Owned(s)
                            }
                            None => Cow::Borrowed(&text[run..self.i]),
                        };
                        self.i += 1;
                        return Ok(s);
                    }
                    b'\\' => {
                        let s = out.get_or_insert_with(String::new);
                        s.push_str(&self.text[run..self.i]);
                        self.i += 1;
                        let Some(&e) = self.b.get(self.i) else {
                            return Err(self.err("unexpected end of input in an escape"));
                        };
                        self.i += 1;
                        let ch = match e {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'/' => '/',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            b'u' => {
                                let hi = self.hex4()?;
                                let cp = if (0xD800..0xDC00).contains(&hi) {
                                    if !self.b[self.i..].starts_with(b"\\u") {
                                        return Err(self.err("a lone high surrogate in a \\u escape; JSON strings must be valid Unicode"));
                                    }
                                    self.i += 2;
                                    let lo = self.hex4()?;
                                    if !(0xDC00..0xE000).contains(&lo) {
                                        return Err(
                                            self.err("invalid low surrogate in a \\u escape pair")
                                        );
                                    }
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                } else if (0xDC00..0xE000).contains(&hi) {
                                    return Err(self.err("a lone low surrogate in a \\u escape; JSON strings must be valid Unicode"));
                                } else {
                                    hi
                                };
                                char::from_u32(cp).ok_or_else(|| self.err("invalid \\u escape"))?
                            }
                            _ => {
                                self.i -= 1;
                                return Err(self.err(format!(
                                    "invalid escape `\\{}` in a string",
                                    self.found().trim_matches('`')
                                )));
                            }
                        };
                        let s = out.get_or_insert_with(String::new);
                        s.push(ch);
                        run = self.i;
                    }
                    c if c < 0x20 => {
                        return Err(self.err(
                            "a control character inside a string; escape it (\\n, \\t, \\u0000)",
                        ));
                    }
                    _ => self.i += 1,
                }
            }
        }

        fn number(&mut self) -> Result<NodeValue<'a>, ParseError> {
            let start = self.i;
            let b = self.b;
            let mut i = self.i;
            if b.get(i) == Some(&b'-') {
                i += 1;
            }
            match b.get(i) {
                Some(b'0') => i += 1,
                Some(c) if c.is_ascii_digit() => {
                    while b.get(i).is_some_and(u8::is_ascii_digit) {
                        i += 1;
                    }
                }
                _ => {
                    self.i = i;
                    return Err(self.err("expected a digit in a number"));
                }
            }
            let mut float = false;
            if b.get(i) == Some(&b'.') {
                float = true;
                i += 1;
                if !b.get(i).is_some_and(u8::is_ascii_digit) {
                    self.i = i;
                    return Err(self.err("expected a digit after the decimal point"));
                }
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            if matches!(b.get(i), Some(b'e' | b'E')) {
                float = true;
                i += 1;
                if matches!(b.get(i), Some(b'+' | b'-')) {
                    i += 1;
                }
                if !b.get(i).is_some_and(u8::is_ascii_digit) {
                    self.i = i;
                    return Err(self.err("expected a digit in the exponent"));
                }
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            let s = &self.text[start..i];
            self.i = i;
            if !float {
                if let Ok(v) = s.parse::<i64>() {
                    return Ok(NodeValue::Int(v));
                }
                if let Ok(v) = s.parse::<u64>() {
                    return Ok(NodeValue::UInt(v));
                }
            }
            match s.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(NodeValue::Float(f)),
                _ => {
                    let pos = self.pos_at(start);
                    Err(ParseError {
                        message: format!("the number {s} is out of range"),
                        pos,
                    })
                }
            }
        }

        /// Reads `"key" :` at the current position.
        fn key(&mut self, limits: &Limits) -> Result<Key<'a>, ParseError> {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.err(format!(
                    "expected a string key in an object, found {}",
                    self.found()
                )));
            }
            let pos = self.pos();
            let name = self.string(limits)?;
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self.err(format!(
                    "expected `:` after an object key, found {}",
                    self.found()
                )));
            }
            self.i += 1;
            Ok(Key { name, pos })
        }
    }

    pub(super) fn parse<'a>(text: &'a str, limits: &Limits) -> Result<Node<'a>, ParseError> {
        parse_streaming(text, limits, None)
    }

    /// Parses, handing each element of the top-level `steps` list to `sink`
    /// as soon as it is complete; the list itself stays empty (the sink
    /// counts the elements). Decoding a step while it is still in
    /// the cache, and never holding the whole tree, is what makes a
    /// million-step definition cheap.
    pub(crate) fn parse_streaming<'a>(
        text: &'a str,
        limits: &Limits,
        mut sink: Option<&mut dyn FnMut(Node<'a>)>,
    ) -> Result<Node<'a>, ParseError> {
        let mut p = P {
            text,
            b: text.as_bytes(),
            i: 0,
            line: 1,
            line_start: 0,
            col_byte: 0,
            col: 1,
        };
        if p.b.starts_with(b"\xEF\xBB\xBF") {
            p.i = 3;
            p.col_byte = 3;
        }
        let mut stack: Vec<Frame<'a>> = Vec::new();
        'value: loop {
            p.ws();
            let pos = p.pos();
            let value = match p.peek() {
                None => {
                    let what = match stack.last() {
                        Some(Frame::Arr { pos, .. }) => format!(
                            "a list opened at line {}, column {} is never closed",
                            pos.line, pos.col
                        ),
                        Some(Frame::Obj { pos, .. }) => format!(
                            "an object opened at line {}, column {} is never closed",
                            pos.line, pos.col
                        ),
                        None => "expected a value".into(),
                    };
                    return Err(p.err(format!("unexpected end of input: {what}")));
                }
                Some(open @ (b'[' | b'{')) => {
                    if stack.len() + 1 > limits.max_depth {
                        return Err(ParseError {
                            message: depth_error(limits),
                            pos,
                        });
                    }
                    p.i += 1;
                    p.ws();
                    if open == b'[' {
                        if p.peek() == Some(b']') {
                            p.i += 1;
                            NodeValue::Seq(Vec::new())
                        } else {
                            stack.push(Frame::Arr {
                                pos,
                                items: Vec::new(),
                            });
                            continue 'value;
                        }
                    } else if p.peek() == Some(b'}') {
                        p.i += 1;
                        NodeValue::Map(Vec::new())
                    } else {
                        let key = p.key(limits)?;
                        stack.push(Frame::Obj {
                            pos,
                            entries: Vec::new(),
                            key: Some(key),
                        });
                        continue 'value;
                    }
                }
                Some(b'"') => NodeValue::Str(p.string(limits)?),
                Some(b't') => p.literal("true", NodeValue::Bool(true))?,
                Some(b'f') => p.literal("false", NodeValue::Bool(false))?,
                Some(b'n') => p.literal("null", NodeValue::Null)?,
                Some(b'-' | b'0'..=b'9') => p.number()?,
                Some(_) => {
                    let found = p.found();
                    return Err(p.err(format!("expected a value, found {found}")));
                }
            };
            let mut node = Node { pos, value };
            // Attach the finished value to its parent, closing parents as they end.
            loop {
                let in_steps = stack.len() == 2
                    && matches!(&stack[0], Frame::Obj { key: Some(k), .. } if k.name == "steps");
                match stack.last_mut() {
                    None => {
                        p.ws();
                        if p.i < p.b.len() {
                            let found = p.found();
                            return Err(p.err(format!(
                                "unexpected {found} after the document; a file holds one JSON value"
                            )));
                        }
                        return Ok(node);
                    }
                    Some(Frame::Arr { items, .. }) => {
                        match sink.as_mut() {
                            Some(sink) if in_steps => sink(node),
                            _ => items.push(node),
                        }
                        p.ws();
                        match p.peek() {
                            Some(b',') => {
                                p.i += 1;
                                p.ws();
                                if p.peek() == Some(b']') {
                                    return Err(p.err("trailing comma before `]`; remove it"));
                                }
                                continue 'value;
                            }
                            Some(b']') => {
                                p.i += 1;
                                match stack.pop() {
                                    Some(Frame::Arr { pos, items }) => {
                                        node = Node {
                                            pos,
                                            value: NodeValue::Seq(items),
                                        }
                                    }
                                    _ => return Err(unbalanced()),
                                }
                            }
                            _ => {
                                let found = p.found();
                                return Err(p.err(format!(
                                    "expected `,` or `]` after a list element, found {found}"
                                )));
                            }
                        }
                    }
                    Some(Frame::Obj { entries, key, .. }) => {
                        let k = key.take().unwrap_or(Key {
                            name: Cow::Borrowed(""),
                            pos: Pos::UNKNOWN,
                        });
                        entries.push((k, node));
                        p.ws();
                        match p.peek() {
                            Some(b',') => {
                                p.i += 1;
                                p.ws();
                                if p.peek() == Some(b'}') {
                                    return Err(p.err("trailing comma before `}`; remove it"));
                                }
                                let k = p.key(limits)?;
                                if let Some(Frame::Obj { key, .. }) = stack.last_mut() {
                                    *key = Some(k);
                                }
                                continue 'value;
                            }
                            Some(b'}') => {
                                p.i += 1;
                                match stack.pop() {
                                    Some(Frame::Obj { pos, entries, .. }) => {
                                        node = Node {
                                            pos,
                                            value: NodeValue::Map(entries),
                                        }
                                    }
                                    _ => return Err(unbalanced()),
                                }
                            }
                            _ => {
                                let found = p.found();
                                return Err(p.err(format!(
                                    "expected `,` or `}}` after an object entry, found {found}"
                                )));
                            }
                        }
                    }
                }
            }
        }
    }

    fn unbalanced() -> ParseError {
        ParseError {
            message: "internal parser error: unbalanced frames".into(),
            pos: Pos::UNKNOWN,
        }
    }
}

/// YAML through serde-saphyr, with its budget and alias limits set from [`Limits`].
mod yaml {
    use super::non_finite;
    use super::{Key, Node, NodeValue, ParseError, Pos, depth_error};
    use crate::limits::Limits;
    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_saphyr::{Budget, DuplicateKeyPolicy, Options, Spanned};
    use std::borrow::Cow;
    use std::cell::Cell;
    use std::fmt;

    thread_local! {
        static MAX_STRING: Cell<usize> = const { Cell::new(usize::MAX) };
    }

    /// A node without its own position (the parent's `Spanned` carries it).
    struct Raw(NodeValue<'static>);

    fn pos_of<T>(s: &Spanned<T>) -> Pos {
        let l = s.referenced;
        Pos::new(
            u32::try_from(l.line()).unwrap_or(u32::MAX),
            u32::try_from(l.column()).unwrap_or(u32::MAX),
        )
    }

    fn node(s: Spanned<Raw>) -> Node<'static> {
        let pos = pos_of(&s);
        Node {
            pos,
            value: s.value.0,
        }
    }

    fn check_len<E: de::Error>(s: &str) -> Result<(), E> {
        let max = MAX_STRING.with(Cell::get);
        if s.len() > max {
            Err(E::custom(format!(
                "a string of {} bytes exceeds the limit of {max} bytes (limit max_string_bytes)",
                s.len()
            )))
        } else {
            Ok(())
        }
    }

    impl<'de> Deserialize<'de> for Raw {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(RawVisitor)
        }
    }

    struct RawVisitor;

    impl<'de> Visitor<'de> for RawVisitor {
        type Value = Raw;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any YAML value")
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Raw, E> {
            Ok(Raw(NodeValue::Bool(v)))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Raw, E> {
            Ok(Raw(NodeValue::Int(v)))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
            Ok(Raw(match i64::try_from(v) {
                Ok(i) => NodeValue::Int(i),
                Err(_) => NodeValue::UInt(v),
            }))
        }

        fn visit_i128<E: de::Error>(self, v: i128) -> Result<Raw, E> {
            i64::try_from(v)
                .map(|i| Raw(NodeValue::Int(i)))
                .or_else(|_| u64::try_from(v).map(|u| Raw(NodeValue::UInt(u))))
                .map_err(|_| E::custom(format!("the integer {v} is out of range")))
        }

        fn visit_u128<E: de::Error>(self, v: u128) -> Result<Raw, E> {
            u64::try_from(v)
                .map_err(|_| E::custom(format!("the integer {v} is out of range")))
                .and_then(|u| self.visit_u64(u))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Raw, E> {
            Ok(Raw(NodeValue::Float(v)))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
            check_len(v)?;
            Ok(Raw(NodeValue::Str(Cow::Owned(v.to_owned()))))
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<Raw, E> {
            check_len(&v)?;
            Ok(Raw(NodeValue::Str(Cow::Owned(v))))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
            Ok(Raw(NodeValue::Null))
        }

        fn visit_none<E: de::Error>(self) -> Result<Raw, E> {
            Ok(Raw(NodeValue::Null))
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
            Raw::deserialize(d)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(item) = seq.next_element::<Spanned<Raw>>()? {
                items.push(node(item));
            }
            Ok(Raw(NodeValue::Seq(items)))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
            let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(1024));
            while let Some(k) = map.next_key::<Spanned<String>>()? {
                let kpos = pos_of(&k);
                let name = k.value;
                check_len(&name)?;
                let v: Spanned<Raw> = map.next_value()?;
                entries.push((
                    Key {
                        name: Cow::Owned(name),
                        pos: kpos,
                    },
                    node(v),
                ));
            }
            Ok(Raw(NodeValue::Map(entries)))
        }
    }

    pub(super) fn parse(text: &str, limits: &Limits) -> Result<Node<'static>, ParseError> {
        let mut options = Options::default();
        options.budget = Some(budget(limits));
        options.duplicate_keys = DuplicateKeyPolicy::LastWins;
        options.strict_booleans = true;
        // `1e400`, `.inf` and `.nan` reach the decoder, which reports each
        // where it stands (with every other problem) without printing `inf`.
        options.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::PassThrough;
        options.alias_limits.max_total_replayed_events = limits.max_yaml_alias_expansion;
        options.alias_limits.max_alias_expansions_per_anchor = usize::MAX;
        options.alias_limits.max_replay_stack_depth = limits.max_depth;
        MAX_STRING.with(|c| c.set(limits.max_string_bytes));
        let result = serde_saphyr::from_str_with_options::<Spanned<Raw>>(text, options);
        MAX_STRING.with(|c| c.set(usize::MAX));
        match result {
            Ok(root) => Ok(node(root)),
            Err(e) => {
                let pos = e
                    .location()
                    .map(|l| {
                        Pos::new(
                            u32::try_from(l.line()).unwrap_or(u32::MAX),
                            u32::try_from(l.column()).unwrap_or(u32::MAX),
                        )
                    })
                    .unwrap_or(Pos::UNKNOWN);
                let message = explain(&e, limits);
                Err(ParseError { message, pos })
            }
        }
    }

    /// serde-saphyr's budget, derived from [`Limits`] so that each of its
    /// checks is one of our documented limits and its message can name it.
    ///
    /// Aliases are bounded by what they replay (`max_yaml_alias_expansion`),
    /// which is what an alias bomb inflates; the number of alias references,
    /// merge keys and retained anchor events follow the same limit. The
    /// library's alias/anchor *ratio* heuristic is off: using one anchor many
    /// times is ordinary YAML (a shared block of parameters, `<<: *defaults`
    /// on every step) and costs no more than the events it replays, which are
    /// counted.
    pub(super) fn budget(limits: &Limits) -> Budget {
        let mut budget = Budget::default();
        budget.max_depth = limits.max_depth;
        budget.flow_nesting_limit = limits.max_depth;
        let nodes = nodes_budget(limits);
        budget.max_nodes = nodes;
        budget.max_events = nodes.saturating_mul(2);
        budget.max_anchors = nodes;
        budget.max_aliases = limits.max_yaml_alias_expansion.max(1);
        budget.max_merge_keys = limits.max_yaml_alias_expansion.max(1);
        budget.max_recorded_anchor_events = limits
            .max_yaml_alias_expansion
            .max(Budget::default().max_recorded_anchor_events);
        budget.enforce_alias_anchor_ratio = false;
        budget.max_total_scalar_bytes =
            usize::try_from(limits.max_definition_bytes).unwrap_or(usize::MAX);
        budget.max_reader_input_bytes = usize::try_from(limits.max_definition_bytes).ok();
        budget
    }

    /// Nodes (maps, lists and scalars) a document may hold: 16 a step.
    fn nodes_budget(limits: &Limits) -> usize {
        limits.max_steps.saturating_mul(16).max(250_000)
    }

    fn alias_error(limits: &Limits) -> String {
        format!(
            "aliases (`*name`) replay more than {} YAML events; this looks like an alias bomb \
             (a \"billion laughs\"). If the document is legitimate, raise the limit with \
             `--limit max_yaml_alias_expansion=N`",
            limits.max_yaml_alias_expansion
        )
    }

    fn too_large(what: &str, limits: &Limits) -> String {
        format!(
            "the document holds too many {what} for a workflow of at most {} steps; \
             if it is legitimate, raise `--limit max_steps=N`",
            limits.max_steps
        )
    }

    /// One error of serde-saphyr in words for the author of the definition:
    /// which of our limits was hit (and the `--limit` key that raises it), or
    /// what is wrong with the YAML, never the library's API names.
    pub(super) fn explain(e: &serde_saphyr::Error, limits: &Limits) -> String {
        use serde_saphyr::Error as E;
        use serde_saphyr::MessageFormatter as _;
        use serde_saphyr::budget::BudgetBreach as B;
        let mut e = e.without_snippet();
        while let E::AliasError { error, .. } = e {
            e = error.without_snippet();
        }
        match e {
            E::Budget { breach, .. } => match breach {
                B::Depth { .. } => depth_error(limits),
                B::Aliases { .. } | B::MergeKeys { .. } | B::RecordedAnchorEvents { .. } => {
                    alias_error(limits)
                }
                B::Anchors { .. } => too_large("anchors (`&name`)", limits),
                B::Events { .. } | B::Nodes { .. } => too_large("values", limits),
                B::ScalarBytes { .. } | B::InputBytes { .. } | B::RecordedAnchorBytes { .. } => {
                    format!(
                        "the document's text exceeds the limit of {} bytes; if it is legitimate, \
                         raise `--limit max_definition_bytes=N`",
                        limits.max_definition_bytes
                    )
                }
                B::Documents { .. } => multiple_documents(),
                _ => "the YAML is malformed or too complex to read safely".to_owned(),
            },
            E::AliasReplayLimitExceeded { .. }
            | E::AliasReplayCounterOverflow { .. }
            | E::AliasExpansionLimitExceeded { .. } => alias_error(limits),
            E::AliasReplayStackDepthExceeded { .. } => format!(
                "aliases nest inside each other deeper than {} levels (limit max_depth); \
                 if the document is legitimate, raise `--limit max_depth=N`",
                limits.max_depth
            ),
            E::RecursiveReferencesRequireWeakTypes { .. } => "an alias (`*name`) is used inside \
                 the value its own anchor (`&name`) marks, which makes the value infinite; \
                 a workflow definition cannot hold a recursive value: write the value out instead"
                .to_owned(),
            E::UnknownAnchor { .. } => "an alias (`*name`) refers to an anchor that is not \
                 defined before it; mark the value with `&name` first, or fix the name"
                .to_owned(),
            E::MultipleDocuments { .. } => multiple_documents(),
            E::NonFiniteFloat { value, .. } => non_finite(value),
            E::InvalidScalar { .. } => "this value does not match its YAML tag (such as \
                 `!!int` or `!!float`); remove the tag or fix the value"
                .to_owned(),
            E::Unexpected { expected, .. } if expected.contains("string") => {
                "a key must be a plain string (YAML complex keys, lists or maps as keys, \
                 are not part of the workflow format)"
                    .to_owned()
            }
            E::Eof { .. } => "the document ends in the middle of a value".to_owned(),
            E::MergeValueNotMapOrSeqOfMaps { .. } => {
                "the value of a merge key (`<<`) must be a map or a list of maps, such as \
                 `<<: *defaults`"
                    .to_owned()
            }
            E::InvalidBinaryBase64 { .. } => {
                "this `!!binary` value is not valid base64; remove the tag to mean text".to_owned()
            }
            E::BinaryNotUtf8 { .. } => "this `!!binary` value does not decode to UTF-8 text, \
                 which is all a workflow definition can hold; remove the tag to mean text"
                .to_owned(),
            E::UnsupportedTag { tag, .. } => format!(
                "the YAML tag {} is not supported in a workflow definition; remove it \
                 (quote the value to mean text)",
                crate::definition::display_snippet(tag)
            ),
            E::TaggedScalarCannotDeserializeIntoString { .. } => {
                "this YAML tag (`!!...` or `!...`) is not supported in a workflow definition; \
                 remove it (quote the value to mean text)"
                    .to_owned()
            }
            E::Message { msg, .. } => first_line(msg),
            other => {
                let text = serde_saphyr::UserMessageFormatter.format_message(other);
                let first = first_line(&text);
                let lower = first.to_ascii_lowercase();
                if lower.contains("depth")
                    || lower.contains("nesting")
                    || lower.contains("recursion")
                {
                    depth_error(limits)
                } else if LIBRARY_WORDS.iter().any(|w| lower.contains(w)) {
                    // A message written for the library's users, not ours.
                    "this YAML cannot be read as part of a workflow definition".to_owned()
                } else {
                    first
                }
            }
        }
    }

    /// Words that mark a message about the library's API rather than the document.
    const LIBRARY_WORDS: &[&str] = &[
        "deserializ",
        "serializ",
        "serde",
        "option<",
        "options",
        "from_str",
        "from_slice",
        "weak",
        "cow<",
        "&str",
        "policy",
        "struct",
        "enum",
        "budget",
    ];

    fn first_line(text: &str) -> String {
        let first = text.lines().next().unwrap_or(text).trim();
        // serde-saphyr may repeat the position in its message; ours is in front already.
        match first.rfind(" at line ") {
            Some(i) => first[..i].to_owned(),
            None => first.to_owned(),
        }
    }

    fn multiple_documents() -> String {
        "the file holds more than one YAML document (a `---` or `...` line after the first \
         document); a workflow definition is one document: remove the extra separator, or put \
         each workflow in its own file"
            .to_owned()
    }
}

/// The message for a non-finite number read from a definition: NaN, or an
/// infinity that is either written so (`.inf`) or a number too large for a
/// 64-bit float (`1e400`); either way, never the word `inf`.
pub(crate) fn non_finite_value(f: f64) -> String {
    if f.is_nan() {
        "NaN (not a number) cannot be a value in a workflow definition; use a finite number"
            .to_owned()
    } else {
        "the number is out of range: numbers in a definition must be finite, \
         at most about ±1.8e308"
            .to_owned()
    }
}

/// The message for a number that is not finite, by the text it was written as.
fn non_finite(text: &str) -> String {
    let t = text
        .trim()
        .trim_start_matches(['+', '-'])
        .to_ascii_lowercase();
    let literal = matches!(
        t.as_str(),
        ".inf" | "inf" | "infinity" | ".nan" | "nan" | "nan.0" | "inf.0"
    );
    let shown = super::definition::display_snippet(text);
    if literal {
        format!(
            "{shown} is not a finite number; a workflow definition holds only finite numbers \
             (as JSON does): use a finite value, or quote it to mean text"
        )
    } else {
        format!(
            "the number {shown} is out of range (the largest is about 1.8e308); \
             use a smaller number, or quote it to mean text"
        )
    }
}

/// TOML through the `toml` crate's spanned document tree.
mod toml_doc {
    use super::{Key, LineIndex, Node, NodeValue, ParseError, Pos, depth_error, string_error};
    use crate::limits::Limits;
    use std::borrow::Cow;
    use toml::de::{DeTable, DeValue};

    struct Cx<'a> {
        text: &'a str,
        lines: LineIndex,
        limits: &'a Limits,
    }

    impl Cx<'_> {
        fn pos(&self, offset: usize) -> Pos {
            self.lines.pos(self.text, offset)
        }

        fn value(
            &self,
            v: &DeValue<'_>,
            start: usize,
            depth: usize,
        ) -> Result<Node<'static>, ParseError> {
            let pos = self.pos(start);
            if depth > self.limits.max_depth {
                return Err(ParseError {
                    message: depth_error(self.limits),
                    pos,
                });
            }
            let value = match v {
                DeValue::String(s) => {
                    if s.len() > self.limits.max_string_bytes {
                        return Err(ParseError {
                            message: string_error(s.len(), self.limits),
                            pos,
                        });
                    }
                    NodeValue::Str(Cow::Owned(s.to_string()))
                }
                DeValue::Integer(i) => {
                    let digits: String = i.as_str().chars().filter(|c| *c != '_').collect();
                    let (neg, body) = match digits.strip_prefix('-') {
                        Some(b) => (true, b.to_owned()),
                        None => (false, digits.trim_start_matches('+').to_owned()),
                    };
                    let body = body
                        .trim_start_matches("0x")
                        .trim_start_matches("0o")
                        .trim_start_matches("0b");
                    if !body.chars().any(|c| c.is_ascii_alphanumeric()) {
                        return Err(ParseError {
                            message: "an integer without digits; write digits after a \
                                      prefix such as `0x` (`0x1F`)"
                                .to_owned(),
                            pos,
                        });
                    }
                    let magnitude =
                        u64::from_str_radix(body, i.radix()).map_err(|_| ParseError {
                            message: format!("the integer {} is out of range", i.as_str()),
                            pos,
                        })?;
                    if neg {
                        let v = 0i64
                            .checked_sub_unsigned(magnitude)
                            .ok_or_else(|| ParseError {
                                message: format!("the integer {} is out of range", i.as_str()),
                                pos,
                            })?;
                        NodeValue::Int(v)
                    } else {
                        match i64::try_from(magnitude) {
                            Ok(v) => NodeValue::Int(v),
                            Err(_) => NodeValue::UInt(magnitude),
                        }
                    }
                }
                DeValue::Float(f) => {
                    let text: String = f.as_str().chars().filter(|c| *c != '_').collect();
                    let v = match text.trim_start_matches('+') {
                        "inf" => f64::INFINITY,
                        "-inf" => f64::NEG_INFINITY,
                        "nan" | "-nan" => f64::NAN,
                        t => t.parse::<f64>().map_err(|_| ParseError {
                            message: format!("`{t}` is not a number"),
                            pos,
                        })?,
                    };
                    if !v.is_finite()
                        && !matches!(text.trim_start_matches(['+', '-']), "inf" | "nan")
                    {
                        // `1e400`: out of range, said with its text as JSON does.
                        return Err(ParseError {
                            message: super::non_finite(f.as_str()),
                            pos,
                        });
                    }
                    NodeValue::Float(v)
                }
                DeValue::Boolean(b) => NodeValue::Bool(*b),
                DeValue::Datetime(d) => NodeValue::Str(Cow::Owned(d.to_string())),
                DeValue::Array(items) => {
                    let mut out = Vec::with_capacity(items.len());
                    for item in items {
                        out.push(self.value(item.get_ref(), item.span().start, depth + 1)?);
                    }
                    NodeValue::Seq(out)
                }
                DeValue::Table(t) => self.table(t, depth + 1)?,
            };
            Ok(Node { pos, value })
        }

        fn table(&self, t: &DeTable<'_>, depth: usize) -> Result<NodeValue<'static>, ParseError> {
            let mut entries = Vec::with_capacity(t.len());
            for (k, v) in t {
                let kpos = self.pos(k.span().start);
                if k.get_ref().len() > self.limits.max_string_bytes {
                    return Err(ParseError {
                        message: string_error(k.get_ref().len(), self.limits),
                        pos: kpos,
                    });
                }
                let node = self.value(v.get_ref(), v.span().start, depth)?;
                entries.push((
                    Key {
                        name: Cow::Owned(k.get_ref().to_string()),
                        pos: kpos,
                    },
                    node,
                ));
            }
            Ok(NodeValue::Map(entries))
        }
    }

    pub(super) fn parse(text: &str, limits: &Limits) -> Result<Node<'static>, ParseError> {
        let cx = Cx {
            text,
            lines: LineIndex::new(text),
            limits,
        };
        match DeTable::parse(text) {
            Ok(root) => {
                let value = cx.table(root.get_ref(), 1)?;
                Ok(Node {
                    pos: Pos::new(1, 1),
                    value,
                })
            }
            Err(e) => {
                let pos = e.span().map(|s| cx.pos(s.start)).unwrap_or(Pos::UNKNOWN);
                let message = e
                    .message()
                    .lines()
                    .next()
                    .unwrap_or("syntax error")
                    .trim()
                    .to_owned();
                Err(ParseError { message, pos })
            }
        }
    }
}
