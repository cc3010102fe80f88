//! TOML through the `toml` crate's spanned document tree.

use super::{Key, LineIndex, Node, NodeValue, ParseError, Pos, depth_error, string_error};
use crate::limits::Limits;
use ::toml::de::{DeTable, DeValue};
use std::borrow::Cow;

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
                let magnitude = u64::from_str_radix(body, i.radix()).map_err(|_| ParseError {
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
                if !v.is_finite() && !matches!(text.trim_start_matches(['+', '-']), "inf" | "nan") {
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
