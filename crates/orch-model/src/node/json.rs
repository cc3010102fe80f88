//! The hand-written JSON parser: iterative (an explicit stack, so no input can
//! overflow the call stack), byte-oriented, and exact about positions.

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

    fn literal(&mut self, word: &str, value: NodeValue<'a>) -> Result<NodeValue<'a>, ParseError> {
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
