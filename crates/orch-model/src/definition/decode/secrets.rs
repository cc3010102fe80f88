//! The top-level `secrets:` section, a step's `secrets:` list, and a step's `cache:` (`true` or `{files, ttl}`).

use super::fields::{CACHE_FIELDS, SECRET_FIELDS};
use super::{Decoder, Path};
use crate::definition::names::display_snippet;
use crate::definition::{CacheSpec, SecretDecl, SecretSource, check_cache_glob};
use crate::diagnostic::DiagnosticKind as K;
use crate::node::{Node, NodeValue};
use compact_str::CompactString;

impl Decoder<'_> {
    /// `secrets: {NAME: {env: VAR} | {file: PATH}, ...}`.
    pub(super) fn secrets_section(&mut self, node: Node<'_>, path: &Path<'_>) -> Vec<SecretDecl> {
        let pos = node.pos;
        let entries = match node.value {
            NodeValue::Null => return Vec::new(),
            NodeValue::Map(entries) => entries,
            other => {
                self.wrong_type(
                    path,
                    &Node { pos, value: other },
                    "a map of secret names to their sources, such as {API_TOKEN: {env: API_TOKEN}}",
                );
                return Vec::new();
            }
        };
        let mut out: Vec<SecretDecl> = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let p = Path::Field(path, &key.name);
            self.map
                .top
                .insert(format!("secrets.{}", key.name), key.pos);
            if out.iter().any(|d| d.name == key.name) {
                let msg = format!(
                    "duplicate secret `{}`; each secret is declared once",
                    key.name
                );
                self.err(K::Duplicate, &p, key.pos, msg);
                continue;
            }
            let vpos = value.pos;
            let Some(mut f) = self.fields(value, &p, SECRET_FIELDS, "a secret's source") else {
                continue;
            };
            let env = f.take("env");
            let file = f.take("file");
            let source = match (env, file) {
                (Some((_, n)), None) => self
                    .string(n, &Path::Field(&p, "env"))
                    .and_then(|v| self.secret_env_var(v, &Path::Field(&p, "env"), vpos))
                    .map(SecretSource::Env),
                (None, Some((_, n))) => {
                    let fp = Path::Field(&p, "file");
                    let npos = n.pos;
                    match self.string(n, &fp) {
                        Some(v) if v.is_empty() || v.contains('\0') => {
                            self.err(
                                K::InvalidValue,
                                &fp,
                                npos,
                                "a secret's file must be a non-empty path without NUL characters",
                            );
                            None
                        }
                        Some(v) => Some(SecretSource::File(v)),
                        None => None,
                    }
                }
                (Some(_), Some(_)) => {
                    self.err(
                        K::InvalidValue,
                        &p,
                        vpos,
                        format!(
                            "secret `{}` has both `env` and `file`; give exactly one source",
                            key.name
                        ),
                    );
                    None
                }
                (None, None) => {
                    self.err(
                        K::MissingField,
                        &p,
                        vpos,
                        format!(
                            "secret `{}` needs a source: `{{env: VARIABLE}}` or `{{file: PATH}}`",
                            key.name
                        ),
                    );
                    None
                }
            };
            if let Some(source) = source {
                out.push(SecretDecl {
                    name: key.name.into_owned(),
                    source,
                });
            }
        }
        out
    }

    fn secret_env_var(
        &mut self,
        v: String,
        path: &Path<'_>,
        pos: crate::node::Pos,
    ) -> Option<String> {
        let ok = v.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ok {
            Some(v)
        } else {
            let msg = format!(
                "environment variable name {} must match [A-Za-z_][A-Za-z0-9_]*",
                display_snippet(&v)
            );
            self.err(K::Name, path, pos, msg);
            None
        }
    }

    /// A step's `secrets: [NAME, ...]`; each entry's position is kept for
    /// validation (which checks that it is declared).
    pub(super) fn step_secrets(
        &mut self,
        node: Node<'_>,
        path: &Path<'_>,
        step: u32,
    ) -> Vec<CompactString> {
        let pos = node.pos;
        let items = match node.value {
            NodeValue::Null => return Vec::new(),
            NodeValue::Seq(items) => items,
            other => {
                self.wrong_type(path, &Node { pos, value: other }, "a list of secret names");
                return Vec::new();
            }
        };
        let mut out: Vec<CompactString> = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let ipos = item.pos;
            let p = Path::Index(path, i);
            let Some(name) = self.compact(item, &p) else {
                continue;
            };
            self.map.refs.insert((step, format!("secrets[{i}]")), ipos);
            if out.contains(&name) {
                let msg = format!("secret `{name}` is listed twice");
                self.err(K::Duplicate, &p, ipos, msg);
                continue;
            }
            out.push(name);
        }
        out
    }

    /// A step's `cache`: `true`/`false`, or `{files: [GLOB...], ttl: DURATION}`
    /// (caching on). `None` when the value is not readable (reported).
    pub(super) fn cache(
        &mut self,
        node: Node<'_>,
        path: &Path<'_>,
        step: u32,
    ) -> Option<Option<Box<CacheSpec>>> {
        let pos = node.pos;
        match node.value {
            NodeValue::Bool(b) => return Some(b.then(Box::default)),
            NodeValue::Map(_) => {}
            other => {
                self.wrong_type(
                    path,
                    &Node { pos, value: other },
                    "true, false, or a map such as {files: [\"data/*.csv\"], ttl: \"1h\"}",
                );
                return None;
            }
        }
        let mut f = self.fields(node, path, CACHE_FIELDS, "cache options")?;
        let mut spec = CacheSpec::default();
        let mut ok = true;
        if let Some((_, n)) = f.take("files") {
            let fp = Path::Field(path, "files");
            let npos = n.pos;
            match n.value {
                NodeValue::Seq(items) => {
                    for (i, item) in items.into_iter().enumerate() {
                        let ip = Path::Index(&fp, i);
                        let ipos = item.pos;
                        // Validation checks the `${params.NAME}` a glob may hold.
                        self.record_refs(&item, &ip, step);
                        match self.string(item, &ip) {
                            Some(g) => match check_cache_glob(&g) {
                                Ok(()) => spec.files.push(g),
                                Err(m) => {
                                    self.err(K::InvalidValue, &ip, ipos, m);
                                    ok = false;
                                }
                            },
                            None => ok = false,
                        }
                    }
                }
                other => {
                    self.wrong_type(
                        &fp,
                        &Node {
                            pos: npos,
                            value: other,
                        },
                        "a list of globs relative to the work directory, such as [\"data/*.csv\"]",
                    );
                    ok = false;
                }
            }
        }
        if let Some((_, n)) = f.take("ttl") {
            match self.timeout(n, &Path::Field(path, "ttl")) {
                Some(t) => spec.ttl = t,
                None => ok = false,
            }
        }
        ok.then(|| Some(Box::new(spec)))
    }
}
