//! Secrets at run time: their values read when a run starts (from the environment, or from a file only its owner may read), handed to the step processes that declare them as environment variables, and masked as `***` in everything a step produces before it is stored or shown.
//!
//! A definition names secrets and their sources (`orch_model::SecretDecl`);
//! [`Secrets::resolve`] reads the values, once per run, in the process that
//! runs the steps. Values live only here: never in parameters (the
//! `${...}` grammar refuses `secrets.`), never in argv, never in the store.
//!
//! Masking is by value: every occurrence of a secret, and of its common
//! encodings (base64, URL-safe base64, hex, percent- and JSON-escaping, and
//! each line of a multi-line value), becomes `***` ([`Masker`]). It applies
//! to a process's output as it is read (also across the reads a stream is
//! cut into: a tail that may begin a secret waits for the next bytes), to
//! each attempt's result and error (`executor::outcome`), and so to
//! events, reports, logs and the store, which are all made from those.
//! Every step of a run with secrets is masked, not only those that receive
//! them: a step can hand a value to another through a file.

use orch_model::{
    CompactString, OrchestrationError, SecretDecl, SecretSource, Workflow, WorkflowStep,
};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// What a masked value becomes.
pub const MASK: &str = "***";

/// The largest secret file read (a secret is a token or a key, not data).
pub const MAX_SECRET_BYTES: u64 = 1024 * 1024;

/// The values of a run's secrets, and the masker made from them. `Debug`
/// shows names only.
pub struct Secrets {
    /// By name, in declaration order: the value, and the environment
    /// variable it was read from (removed from every step process).
    values: Vec<(CompactString, Vec<u8>, Option<String>)>,
    masker: Arc<Masker>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.values.iter().map(|(n, _, _)| n.as_str()).collect();
        f.debug_struct("Secrets")
            .field("names", &names)
            .finish_non_exhaustive()
    }
}

impl Secrets {
    /// Reads the values of `decls`: an environment variable of this process,
    /// or a file (relative paths from `work_dir`) that must be a regular
    /// file readable by its owner only (mode 0600 or 0400). One trailing
    /// newline of a file is not part of the value.
    ///
    /// # Errors
    /// `InvalidParameters` for a variable that is not set or a value that is
    /// empty or holds a NUL byte, `PermissionDenied` for a file that group
    /// or others may read, `Io` for a file that cannot be read; the message
    /// names the secret and says how to fix it. No value is ever shown.
    pub fn resolve(decls: &[SecretDecl], work_dir: &Path) -> Result<Self, OrchestrationError> {
        let mut values = Vec::with_capacity(decls.len());
        for d in decls {
            let (value, var) = match &d.source {
                SecretSource::Env(var) => (from_env(&d.name, var)?, Some(var.clone())),
                SecretSource::File(path) => (from_file(&d.name, path, work_dir)?, None),
            };
            if value.is_empty() {
                return Err(OrchestrationError::invalid_parameters(format!(
                    "secret `{}` is empty ({}); give it a value",
                    d.name,
                    source_text(&d.source)
                )));
            }
            if value.contains(&0) {
                return Err(OrchestrationError::invalid_parameters(format!(
                    "secret `{}` holds a NUL byte ({}), which an environment variable cannot carry",
                    d.name,
                    source_text(&d.source)
                )));
            }
            values.push((CompactString::from(d.name.as_str()), value, var));
        }
        Ok(Self::from_parts(values))
    }

    /// Secrets with the given values (tests, and callers that read values
    /// themselves).
    pub fn from_values<N: Into<CompactString>, V: Into<Vec<u8>>>(
        values: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        Self::from_parts(
            values
                .into_iter()
                .map(|(n, v)| (n.into(), v.into(), None))
                .collect(),
        )
    }

    fn from_parts(values: Vec<(CompactString, Vec<u8>, Option<String>)>) -> Self {
        let masker = Arc::new(Masker::new(values.iter().map(|(_, v, _)| v.as_slice())));
        Self { values, masker }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The masker of every value.
    pub fn masker(&self) -> &Arc<Masker> {
        &self.masker
    }

    /// What a step that declares `names` gets (names it does not know are
    /// left out: validation refuses them).
    pub fn for_step(self: &Arc<Self>, names: &[CompactString]) -> StepSecrets {
        let env = names
            .iter()
            .filter_map(|n| self.values.iter().position(|(m, _, _)| m == n))
            .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
            .collect();
        StepSecrets {
            all: self.clone(),
            env,
        }
    }
}

/// The secrets of a run of `wf`: those the caller read (`given`), else
/// read now ([`Secrets::resolve`]); `None` when the workflow declares none
/// and none were given.
///
/// # Errors
/// As [`Secrets::resolve`].
pub fn for_run(
    wf: &Workflow,
    given: Option<&Arc<Secrets>>,
    work_dir: &Path,
) -> Result<Option<Arc<Secrets>>, OrchestrationError> {
    match given {
        Some(s) => Ok(Some(s.clone())),
        None if wf.secrets.is_empty() => Ok(None),
        None => Secrets::resolve(&wf.secrets, work_dir).map(|s| Some(Arc::new(s))),
    }
}

/// What an attempt of `step` gets when it runs on its own (a worker's
/// claim): the run's secrets read where the step runs.
///
/// # Errors
/// As [`Secrets::resolve`].
pub fn for_attempt(
    wf: &Workflow,
    step: &WorkflowStep,
    work_dir: &Path,
) -> Result<Option<StepSecrets>, OrchestrationError> {
    Ok(for_run(wf, None, work_dir)?.map(|s| s.for_step(&step.secrets)))
}

/// What one step's attempt gets of its run's secrets: the values it
/// declared (as environment variables) and the run's masker.
#[derive(Clone)]
pub struct StepSecrets {
    all: Arc<Secrets>,
    env: Vec<u32>,
}

impl fmt::Debug for StepSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.env().map(|(n, _)| n).collect();
        f.debug_struct("StepSecrets")
            .field("env", &names)
            .finish_non_exhaustive()
    }
}

impl StepSecrets {
    /// The same run's secrets for a step that declares `names`.
    pub fn with_env(&self, names: &[CompactString]) -> StepSecrets {
        self.all.for_step(names)
    }

    /// The step's secrets as `(variable, value)`.
    pub fn env(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.env.iter().filter_map(|&i| {
            self.all
                .values
                .get(i as usize)
                .map(|(n, v, _)| (n.as_str(), v.as_slice()))
        })
    }

    /// The environment variables secrets were read from: no step process
    /// inherits them from orch (a step gets a secret only by declaring it).
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.all.values.iter().filter_map(|(_, _, v)| v.as_deref())
    }

    /// The run's masker.
    pub fn masker(&self) -> &Arc<Masker> {
        &self.all.masker
    }

    /// Sets the step's secrets on `cmd` (after removing every secret's
    /// source variable that orch's environment would pass on).
    pub fn apply(&self, cmd: &mut tokio::process::Command) {
        use std::os::unix::ffi::OsStrExt;
        for var in self.sources() {
            cmd.env_remove(var);
        }
        for (name, value) in self.env() {
            cmd.env(name, std::ffi::OsStr::from_bytes(value));
        }
    }
}

fn source_text(s: &SecretSource) -> String {
    match s {
        SecretSource::Env(v) => format!("environment variable `{v}`"),
        SecretSource::File(p) => format!("file `{p}`"),
    }
}

fn from_env(name: &str, var: &str) -> Result<Vec<u8>, OrchestrationError> {
    use std::os::unix::ffi::OsStringExt;
    match std::env::var_os(var) {
        Some(v) => Ok(v.into_vec()),
        None => Err(OrchestrationError::invalid_parameters(format!(
            "secret `{name}` is read from the environment variable `{var}`, which is not set; \
             set it for the process that runs the steps (export {var}=...)"
        ))),
    }
}

fn from_file(name: &str, path: &str, work_dir: &Path) -> Result<Vec<u8>, OrchestrationError> {
    use std::os::unix::fs::MetadataExt;
    let full = work_dir.join(path);
    let shown = full.display();
    let io = |what: &str, e: std::io::Error| OrchestrationError::Io {
        message: format!("secret `{name}`: cannot {what} `{shown}`: {e}"),
    };
    let file = std::fs::File::open(&full).map_err(|e| io("open", e))?;
    // The file opened is the one checked (a symlink is followed once, at open).
    let meta = file.metadata().map_err(|e| io("read the mode of", e))?;
    if !meta.is_file() {
        return Err(OrchestrationError::invalid_parameters(format!(
            "secret `{name}`: `{shown}` is not a regular file"
        )));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(OrchestrationError::PermissionDenied {
            message: format!(
                "secret `{name}`: `{shown}` has mode {mode:04o}, so other users may read it; \
                 make it readable by its owner only (chmod 600 '{shown}')"
            ),
        });
    }
    if meta.len() > MAX_SECRET_BYTES {
        return Err(OrchestrationError::invalid_parameters(format!(
            "secret `{name}`: `{shown}` has {} bytes; a secret file may have at most {MAX_SECRET_BYTES}",
            meta.len()
        )));
    }
    let mut value = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut value)
        .map_err(|e| io("read", e))?;
    if value.last() == Some(&b'\n') {
        value.pop();
        if value.last() == Some(&b'\r') {
            value.pop();
        }
    }
    Ok(value)
}

/// Replaces every occurrence of a set of byte strings (secrets and their
/// encodings) with [`MASK`], leftmost first and, among those starting at
/// one place, longest first.
pub struct Masker {
    /// Longest first.
    patterns: Vec<Vec<u8>>,
    /// Whether a pattern starts with each byte (most bytes start none).
    first: [bool; 256],
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masker")
            .field("patterns", &self.patterns.len())
            .finish_non_exhaustive()
    }
}

/// Shorter values get no encoded forms: their encodings are short strings
/// that turn up by chance.
const MIN_ENCODED: usize = 6;

/// Lines of a multi-line value shorter than this are not masked on their own.
const MIN_LINE: usize = 6;

impl Masker {
    /// A masker of `values` and their common encodings.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        for v in values {
            if v.is_empty() {
                continue;
            }
            patterns.push(v.to_vec());
            if v.len() >= MIN_ENCODED {
                patterns.extend(encodings(v));
            }
            if v.contains(&b'\n') {
                for line in v.split(|&b| b == b'\n') {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if line.trim_ascii().len() >= MIN_LINE {
                        patterns.push(line.to_vec());
                    }
                }
            }
        }
        patterns.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        patterns.dedup();
        let mut first = [false; 256];
        for p in &patterns {
            first[p[0] as usize] = true;
        }
        Self { patterns, first }
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Masks `bytes` to the end. With `hold`, stops where a pattern may
    /// begin that the bytes end inside of, and returns where (the caller
    /// keeps the rest for when more bytes come); otherwise returns the length.
    fn scan(&self, bytes: &[u8], out: &mut Vec<u8>, hold: bool) -> usize {
        let mut lit = 0;
        let mut i = 0;
        while i < bytes.len() {
            if !self.first[bytes[i] as usize] {
                i += 1;
                continue;
            }
            let rest = &bytes[i..];
            let mut matched = 0;
            let mut partial = false;
            for p in &self.patterns {
                if rest.len() >= p.len() {
                    if rest.starts_with(p) {
                        matched = p.len();
                        break;
                    }
                } else if hold && p.starts_with(rest) {
                    // A longer pattern may match once more bytes come.
                    partial = true;
                    break;
                }
            }
            if partial {
                out.extend_from_slice(&bytes[lit..i]);
                return i;
            }
            if matched > 0 {
                out.extend_from_slice(&bytes[lit..i]);
                out.extend_from_slice(MASK.as_bytes());
                i += matched;
                lit = i;
            } else {
                i += 1;
            }
        }
        out.extend_from_slice(&bytes[lit..]);
        bytes.len()
    }

    /// `bytes` masked.
    pub fn mask_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        if self.patterns.is_empty() || !bytes.iter().any(|&b| self.first[b as usize]) {
            return Cow::Borrowed(bytes);
        }
        let mut out = Vec::with_capacity(bytes.len());
        self.scan(bytes, &mut out, false);
        if out == bytes {
            Cow::Borrowed(bytes)
        } else {
            Cow::Owned(out)
        }
    }

    /// `text` masked. Patterns that are not UTF-8 are left out here: a
    /// match inside a character would break it.
    pub fn mask_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.mask_bytes(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            Cow::Owned(b) => match String::from_utf8(b) {
                Ok(s) => Cow::Owned(s),
                // A pattern that is not UTF-8 cut a character: mask by
                // characters instead (only UTF-8 patterns can match then).
                Err(_) => Cow::Owned(self.mask_str_utf8_only(text)),
            },
        }
    }

    fn mask_str_utf8_only(&self, text: &str) -> String {
        let utf8: Vec<&[u8]> = self
            .patterns
            .iter()
            .filter(|p| std::str::from_utf8(p).is_ok())
            .map(Vec::as_slice)
            .collect();
        let m = Masker::from_sorted(utf8);
        let mut out = Vec::with_capacity(text.len());
        m.scan(text.as_bytes(), &mut out, false);
        String::from_utf8(out).unwrap_or_default()
    }

    fn from_sorted(patterns: Vec<&[u8]>) -> Self {
        let mut first = [false; 256];
        for p in &patterns {
            first[p[0] as usize] = true;
        }
        Self {
            patterns: patterns.into_iter().map(<[u8]>::to_vec).collect(),
            first,
        }
    }

    /// Masks every string (and key) in `v`.
    pub fn mask_value(&self, v: &mut Value) {
        if self.patterns.is_empty() {
            return;
        }
        match v {
            Value::String(s) => {
                if let Cow::Owned(m) = self.mask_str(s) {
                    *s = m;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.mask_value(i)),
            Value::Object(map) => {
                let keys_hit = map
                    .keys()
                    .any(|k| matches!(self.mask_str(k), Cow::Owned(_)));
                if keys_hit {
                    let old = std::mem::take(map);
                    for (k, mut item) in old {
                        self.mask_value(&mut item);
                        map.insert(self.mask_str(&k).into_owned(), item);
                    }
                } else {
                    map.values_mut().for_each(|i| self.mask_value(i));
                }
            }
            _ => {}
        }
    }

    /// Masks an action's result or error: its value, message and data.
    pub fn mask_result(&self, r: &mut Result<Value, crate::action::ActionError>) {
        match r {
            Ok(v) => self.mask_value(v),
            Err(e) => {
                if let Cow::Owned(m) = self.mask_str(&e.message) {
                    e.message = m;
                }
                if let Some(d) = &mut e.data {
                    self.mask_value(d);
                }
            }
        }
    }

    /// A masker of one stream read in pieces.
    pub fn stream(self: &Arc<Self>) -> StreamMask {
        StreamMask {
            masker: self.clone(),
            pending: Vec::new(),
        }
    }
}

/// Masks a stream that arrives in pieces: the end of a piece that may be
/// the start of a secret is held back until the next piece (or the end)
/// says whether it is one. What is held back is shorter than the longest
/// pattern.
#[derive(Debug)]
pub struct StreamMask {
    masker: Arc<Masker>,
    pending: Vec<u8>,
}

impl StreamMask {
    /// Takes the next piece; returns what can be passed on, masked.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::with_capacity(self.pending.len());
        let done = self.masker.scan(&self.pending, &mut out, true);
        self.pending.drain(..done);
        out
    }

    /// The stream ended: what was held back, masked. When it was cut
    /// (`truncated`: it reached its limit), a held-back start of a secret
    /// is masked too, since its end was never read.
    pub fn finish(&mut self, truncated: bool) -> Vec<u8> {
        let pending = std::mem::take(&mut self.pending);
        let mut out = Vec::with_capacity(pending.len());
        if truncated {
            let done = self.masker.scan(&pending, &mut out, true);
            if done < pending.len() {
                out.extend_from_slice(MASK.as_bytes());
            }
        } else {
            self.masker.scan(&pending, &mut out, false);
        }
        out
    }
}

/// The encoded forms of `v` that programs commonly print, each different
/// from `v` itself.
fn encodings(v: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let b64 = base64(v, STANDARD, true);
    out.push(b64.trim_end_matches('=').as_bytes().to_vec());
    out.push(b64.into_bytes());
    let url = base64(v, URL_SAFE, false);
    out.push(url.into_bytes());
    out.push(hex(v, b"0123456789abcdef"));
    out.push(hex(v, b"0123456789ABCDEF"));
    let pct = percent(v);
    if pct != v {
        out.push(pct);
    }
    if let Ok(s) = std::str::from_utf8(v) {
        let json = serde_json::to_string(s).unwrap_or_default();
        let inner = json
            .strip_prefix('"')
            .and_then(|j| j.strip_suffix('"'))
            .unwrap_or_default();
        if inner.as_bytes() != v && !inner.is_empty() {
            out.push(inner.as_bytes().to_vec());
        }
    }
    out
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64(v: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(v.len().div_ceil(3) * 4);
    for chunk in v.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for k in 0..4 {
            if k < chars {
                out.push(alphabet[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

fn hex(v: &[u8], digits: &[u8; 16]) -> Vec<u8> {
    v.iter()
        .flat_map(|b| [digits[(b >> 4) as usize], digits[(b & 15) as usize]])
        .collect()
}

/// Percent-encoding of everything but RFC 3986's unreserved characters.
fn percent(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    for &b in v {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else {
            out.push(b'%');
            out.extend(hex(&[b], b"0123456789ABCDEF"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn masker(values: &[&str]) -> Arc<Masker> {
        Arc::new(Masker::new(values.iter().map(|v| v.as_bytes())))
    }

    #[test]
    fn base64_matches_the_standard_encodings() {
        assert_eq!(base64(b"", STANDARD, true), "");
        assert_eq!(base64(b"f", STANDARD, true), "Zg==");
        assert_eq!(base64(b"fo", STANDARD, true), "Zm8=");
        assert_eq!(base64(b"foo", STANDARD, true), "Zm9v");
        assert_eq!(base64(b"foobar", STANDARD, true), "Zm9vYmFy");
        assert_eq!(base64(&[0xfb, 0xff], URL_SAFE, false), "-_8");
        assert_eq!(percent(b"a b/c"), b"a%20b%2Fc");
    }

    #[test]
    fn every_occurrence_and_encoding_is_masked() {
        let m = masker(&["s3cr3t-Value/+"]);
        let text = "a s3cr3t-Value/+ b s3cr3t-Value/+ c";
        assert_eq!(m.mask_str(text), "a *** b *** c");
        let b64 = base64(b"s3cr3t-Value/+", STANDARD, true);
        let hex_text =
            String::from_utf8(hex(b"s3cr3t-Value/+", b"0123456789abcdef")).unwrap_or_default();
        let pct = String::from_utf8(percent(b"s3cr3t-Value/+")).unwrap_or_default();
        for enc in [
            b64.as_str(),
            b64.trim_end_matches('='),
            hex_text.as_str(),
            pct.as_str(),
        ] {
            assert_eq!(m.mask_str(&format!("<{enc}>")), "<***>", "{enc}");
        }
        // Nothing else changes, and text without a secret is not copied.
        assert!(matches!(m.mask_str("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_escaped_and_multi_line_values_are_masked() {
        let m = masker(&["line-one-abc\nline \"two\" xyz"]);
        let escaped = r#"line-one-abc\nline \"two\" xyz"#;
        assert_eq!(m.mask_str(&format!("[{escaped}]")), "[***]");
        assert_eq!(m.mask_str("only line-one-abc here"), "only *** here");
    }

    #[test]
    fn the_longest_of_overlapping_secrets_wins() {
        let m = masker(&["abc", "abcdef"]);
        assert_eq!(m.mask_str("xabcdefx abcx"), "x***x ***x");
    }

    #[test]
    fn values_and_errors_are_masked_throughout() {
        let m = masker(&["hunter2"]);
        let mut v = json!({"stdout": "pw=hunter2", "list": ["hunter2", 1], "hunter2": true});
        m.mask_value(&mut v);
        assert_eq!(
            v,
            json!({"stdout": "pw=***", "list": ["***", 1], "***": true})
        );
        let mut r: Result<Value, crate::action::ActionError> = Err(
            crate::action::ActionError::retryable("ExitCode", "bad hunter2")
                .with_data(json!({"stderr": "hunter2"})),
        );
        m.mask_result(&mut r);
        let e = r.expect_err("an error");
        assert_eq!(e.message, "bad ***");
        assert_eq!(e.data.as_deref(), Some(&json!({"stderr": "***"})));
    }

    #[test]
    fn a_secret_cut_across_pieces_of_a_stream_is_masked() {
        let m = masker(&["topsecret"]);
        let text = b"before topsecret middle topsecret after top";
        for cut in 1..text.len() {
            let mut s = m.stream();
            let mut out = s.push(&text[..cut]);
            out.extend(s.push(&text[cut..]));
            out.extend(s.finish(false));
            assert_eq!(
                String::from_utf8_lossy(&out),
                "before *** middle *** after top",
                "cut at {cut}"
            );
        }
        // Byte by byte: what is held back is never more than a secret's start.
        let mut s = m.stream();
        let mut out = Vec::new();
        for b in text {
            out.extend(s.push(&[*b]));
            assert!(s.pending.len() < "topsecret".len());
        }
        out.extend(s.finish(false));
        assert_eq!(
            String::from_utf8_lossy(&out),
            "before *** middle *** after top"
        );
        // A stream cut at its limit inside a secret shows no part of it.
        let mut s = m.stream();
        let mut out = s.push(b"x topsec");
        out.extend(s.finish(true));
        assert_eq!(String::from_utf8_lossy(&out), "x ***");
    }

    #[test]
    fn a_pattern_that_is_not_utf8_never_breaks_text() {
        let m = Arc::new(Masker::new([&[0xa9u8][..]]));
        assert_eq!(m.mask_str("é©"), "é©");
        assert_eq!(m.mask_bytes(&[0x41, 0xa9]).as_ref(), b"A***");
    }

    #[test]
    fn files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "value-from-file\n").expect("write");
        let decls = [SecretDecl {
            name: "T".into(),
            source: SecretSource::File("token".into()),
        }];
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = Secrets::resolve(&decls, dir.path()).expect_err("0644 is refused");
        let msg = e.to_string();
        assert!(
            msg.contains("mode 0644") && msg.contains("chmod 600"),
            "{msg}"
        );
        assert!(!msg.contains("value-from-file"), "{msg}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let s = Arc::new(Secrets::resolve(&decls, dir.path()).expect("0600 is read"));
        let step = s.for_step(&["T".into()]);
        let env: Vec<(&str, &[u8])> = step.env().collect();
        assert_eq!(
            env,
            [("T", &b"value-from-file"[..])],
            "one trailing newline is dropped"
        );
        assert!(!format!("{s:?} {step:?}").contains("value-from-file"));
        let missing = [SecretDecl {
            name: "M".into(),
            source: SecretSource::Env("ORCH_TEST_SURELY_UNSET_VARIABLE".into()),
        }];
        let e = Secrets::resolve(&missing, dir.path()).expect_err("unset");
        assert!(e.to_string().contains("is not set"), "{e}");
    }
}
