//! Tool inputs: one table per tool gives each argument's name, the other
//! name the original module used for it, its type and whether it is
//! required. The same table produces the JSON Schema of `tools/list` and
//! checks a call's arguments, so the two cannot drift apart.

use serde_json::{Map, Value, json};

/// The type of one argument.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ty {
    /// A string.
    Str,
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// A number greater than zero.
    Positive,
    /// A number zero or greater.
    NonNegative,
    /// An integer zero or greater.
    Count,
    /// `true` or `false`.
    Bool,
    /// A JSON object.
    Object,
    /// A list of strings.
    StrList,
    /// A value whose schema is given by the function (checked as an array
    /// or an object by `kind`; the engine checks the rest, with every problem).
    Custom(fn() -> Value, Kind),
}

/// The JSON kind a [`Ty::Custom`] argument must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A JSON array.
    Array,
    /// A JSON object.
    Object,
}

/// One argument of a tool.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    /// The documented name.
    pub(crate) name: &'static str,
    /// The name the original module's code used, accepted too.
    pub(crate) alias: Option<&'static str>,
    /// Its type.
    pub(crate) ty: Ty,
    /// Whether the call must give it (under either name).
    pub(crate) required: bool,
    /// What it means.
    pub(crate) doc: &'static str,
}

/// A required argument.
pub(crate) const fn req(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        name,
        alias: None,
        ty,
        required: true,
        doc,
    }
}

/// An optional argument.
pub(crate) const fn opt(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        name,
        alias: None,
        ty,
        required: false,
        doc,
    }
}

impl Field {
    /// With the other name the original module used.
    pub(crate) const fn or(mut self, alias: &'static str) -> Self {
        self.alias = Some(alias);
        self
    }
}

fn type_schema(ty: Ty) -> Value {
    match ty {
        Ty::Str => json!({"type": "string"}),
        Ty::Enum(values) => json!({"type": "string", "enum": values}),
        Ty::Positive => json!({"type": "number", "exclusiveMinimum": 0}),
        Ty::NonNegative => json!({"type": "number", "minimum": 0}),
        Ty::Count => json!({"type": "integer", "minimum": 0}),
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Object => json!({"type": "object"}),
        Ty::StrList => json!({"type": "array", "items": {"type": "string"}}),
        Ty::Custom(schema, _) => schema(),
    }
}

/// The JSON Schema of a tool's input (`inputSchema` in `tools/list`). An
/// argument with two names is listed under both; `anyOf` says that one of
/// them is required.
pub(crate) fn schema(fields: &[Field]) -> Map<String, Value> {
    let mut props = Map::new();
    let mut required = Vec::new();
    let mut any_of = Vec::new();
    for f in fields {
        let mut s = type_schema(f.ty);
        if let Value::Object(m) = &mut s {
            m.insert("description".into(), Value::String(f.doc.to_owned()));
        }
        props.insert(f.name.to_owned(), s.clone());
        if let Some(alias) = f.alias {
            if let Value::Object(m) = &mut s {
                m.insert(
                    "description".into(),
                    Value::String(format!("Another name for `{}`.", f.name)),
                );
            }
            props.insert(alias.to_owned(), s);
            if f.required {
                any_of.push(json!([{"required": [f.name]}, {"required": [alias]}]));
            }
        } else if f.required {
            required.push(Value::String(f.name.to_owned()));
        }
    }
    let mut out = Map::new();
    out.insert("type".into(), json!("object"));
    out.insert("properties".into(), Value::Object(props));
    if !required.is_empty() {
        out.insert("required".into(), Value::Array(required));
    }
    match any_of.len() {
        0 => {}
        1 => {
            if let Some(v) = any_of.pop() {
                out.insert("anyOf".into(), v);
            }
        }
        _ => {
            let all: Vec<Value> = any_of.into_iter().map(|a| json!({"anyOf": a})).collect();
            out.insert("allOf".into(), Value::Array(all));
        }
    }
    out.insert("additionalProperties".into(), json!(false));
    out
}

/// A call's arguments, checked against its table, under their documented names.
#[derive(Debug, Clone, Default)]
pub(crate) struct Args(Map<String, Value>);

/// The JSON kind of a value, for messages.
fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_type(tool: &str, name: &str, ty: Ty, v: &Value) -> Result<(), String> {
    let bad = |want: &str| {
        let shown = v.to_string();
        let shown = if shown.len() > 80 {
            format!("{}...", shown.chars().take(77).collect::<String>())
        } else {
            shown
        };
        Err(format!(
            "{tool}: argument `{name}` must be {want}, found {} ({shown})",
            kind_of(v)
        ))
    };
    match ty {
        Ty::Str if !v.is_string() => bad("a string"),
        Ty::Enum(values) => match v.as_str() {
            Some(s) if values.contains(&s) => Ok(()),
            _ => bad(&format!("one of {}", values.join(", "))),
        },
        Ty::Positive => match v.as_f64() {
            Some(x) if x > 0.0 && x.is_finite() => Ok(()),
            _ => bad("a number greater than 0"),
        },
        Ty::NonNegative => match v.as_f64() {
            Some(x) if x >= 0.0 && x.is_finite() => Ok(()),
            _ => bad("a number 0 or greater"),
        },
        Ty::Count if v.as_u64().is_none() => bad("an integer 0 or greater"),
        Ty::Bool if !v.is_boolean() => bad("true or false"),
        Ty::Object | Ty::Custom(_, Kind::Object) if !v.is_object() => bad("an object"),
        Ty::Custom(_, Kind::Array) if !v.is_array() => bad("an array"),
        Ty::StrList => match v.as_array() {
            Some(a) if a.iter().all(Value::is_string) => Ok(()),
            _ => bad("an array of strings"),
        },
        _ => Ok(()),
    }
}

impl Args {
    /// Checks `given` against `fields`: unknown arguments (with the closest
    /// known name), missing required ones, wrong types, and an argument
    /// given under both its names with different values are refused, each
    /// with a message that says what to send instead. A `null` counts as
    /// not given.
    pub(crate) fn check(
        tool: &str,
        fields: &[Field],
        given: Option<Map<String, Value>>,
    ) -> Result<Self, String> {
        let given = given.unwrap_or_default();
        let mut out = Map::new();
        for (k, v) in given {
            let Some(f) = fields
                .iter()
                .find(|f| f.name == k || f.alias == Some(k.as_str()))
            else {
                let known: Vec<&str> = fields
                    .iter()
                    .flat_map(|f| std::iter::once(f.name).chain(f.alias))
                    .collect();
                return Err(if known.is_empty() {
                    format!("{tool}: takes no arguments, found `{k}`")
                } else {
                    format!(
                        "{tool}: unknown argument `{k}`; its arguments: {}",
                        known.join(", ")
                    )
                });
            };
            if v.is_null() {
                continue;
            }
            check_type(tool, &k, f.ty, &v)?;
            if let Some(prev) = out.get(f.name) {
                if prev != &v {
                    return Err(format!(
                        "{tool}: `{}` and `{}` name the same argument and were given different values; give one",
                        f.name,
                        f.alias.unwrap_or(f.name)
                    ));
                }
            }
            out.insert(f.name.to_owned(), v);
        }
        for f in fields.iter().filter(|f| f.required) {
            if !out.contains_key(f.name) {
                return Err(match f.alias {
                    Some(a) => format!(
                        "{tool}: missing the required argument `{}` (or `{a}`): {}",
                        f.name, f.doc
                    ),
                    None => format!(
                        "{tool}: missing the required argument `{}`: {}",
                        f.name, f.doc
                    ),
                });
            }
        }
        Ok(Self(out))
    }

    /// An argument, when given.
    pub(crate) fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// A string argument (checked to be one), when given.
    pub(crate) fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    /// A required string argument (checked to be given).
    pub(crate) fn text(&self, name: &str) -> &str {
        self.str(name).unwrap_or_default()
    }

    /// A number argument, when given.
    pub(crate) fn num(&self, name: &str) -> Option<f64> {
        self.0.get(name).and_then(Value::as_f64)
    }

    /// A boolean argument, or `default`.
    pub(crate) fn flag(&self, name: &str, default: bool) -> bool {
        self.0.get(name).and_then(Value::as_bool).unwrap_or(default)
    }

    /// An object argument, or an empty one.
    pub(crate) fn object(&self, name: &str) -> Map<String, Value> {
        match self.0.get(name) {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        }
    }

    /// A list of strings, or an empty one.
    pub(crate) fn strings(&self, name: &str) -> Vec<String> {
        self.0
            .get(name)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[Field] = &[
        req("project_name", Ty::Str, "the project").or("name"),
        opt("timeout_seconds", Ty::Positive, "limit"),
        opt("mode", Ty::Enum(&["sequential", "parallel"]), "mode"),
    ];

    fn args(v: Value) -> Option<Map<String, Value>> {
        v.as_object().cloned()
    }

    #[test]
    fn aliases_are_accepted_and_stored_under_the_documented_name() {
        let a = Args::check("t", FIELDS, args(json!({"name": "p"}))).expect("valid");
        assert_eq!(a.str("project_name"), Some("p"));
    }

    #[test]
    fn bad_inputs_are_refused_with_what_to_send() {
        let cases = [
            (
                json!({}),
                "missing the required argument `project_name` (or `name`)",
            ),
            (json!({"name": 3}), "must be a string"),
            (json!({"name": "p", "nme": 1}), "unknown argument `nme`"),
            (json!({"name": "p", "timeout_seconds": 0}), "greater than 0"),
            (
                json!({"name": "p", "mode": "fast"}),
                "one of sequential, parallel",
            ),
            (
                json!({"name": "p", "project_name": "q"}),
                "different values",
            ),
        ];
        for (given, want) in cases {
            let e = Args::check("t", FIELDS, args(given.clone())).expect_err("refused");
            assert!(e.contains(want), "{given}: {e}");
        }
    }

    #[test]
    fn schema_lists_both_names_and_requires_one() {
        let s = Value::Object(schema(FIELDS));
        assert_eq!(s["properties"]["name"]["type"], "string");
        assert_eq!(s["anyOf"][1]["required"][0], "name");
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["properties"]["mode"]["enum"][1], "parallel");
    }
}
