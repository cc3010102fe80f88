//! A format-neutral document tree with source positions, built from JSON, YAML or TOML.
//!
//! Definitions are decoded from this tree rather than straight through serde so
//! that decoding can report *every* problem at once, each with its path and its
//! line and column, and so that all three formats share one decoder and one set
//! of limits.

mod json;
mod toml;
mod yaml;

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
        Format::Toml => self::toml::parse(text, limits),
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
