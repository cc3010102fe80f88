//! Result caching: a step with `cache: true` whose inputs hash to a stored key is not run again.
//!
//! The key is blake3 over the step's module, action, resolved parameters and
//! the results of its dependencies, each written as canonical JSON (object
//! keys sorted), so the same inputs always give the same key and any change
//! gives another. With `cache: {files: [GLOB...]}` the contents of the files
//! the globs match in the work directory are part of it too
//! ([`files_digest`], [`with_files`]), and with `ttl` an entry stored longer
//! ago than that is not served ([`ResultCache::get`]'s `stored_since`).

use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A cache key: 32 bytes of blake3, shown as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CacheKey(pub [u8; 32]);

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({self})")
    }
}

impl CacheKey {
    /// Parses 64 hex digits.
    pub fn parse(hex: &str) -> Option<Self> {
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }
}

fn write_canonical(h: &mut blake3::Hasher, v: &Value) {
    match v {
        Value::Object(m) => {
            h.update(b"{");
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            for (k, v) in sorted {
                write_canonical(h, &Value::String(k.clone()));
                h.update(b":");
                write_canonical(h, v);
                h.update(b",");
            }
            h.update(b"}");
        }
        Value::Array(items) => {
            h.update(b"[");
            for v in items {
                write_canonical(h, v);
                h.update(b",");
            }
            h.update(b"]");
        }
        other => {
            h.update(other.to_string().as_bytes());
        }
    }
}

/// The key of a step's inputs.
pub fn cache_key(module: &str, action: &str, params: &Value, upstream: &[&Value]) -> CacheKey {
    let mut h = blake3::Hasher::new();
    h.update(b"orch-cache-v1\0");
    h.update(module.as_bytes());
    h.update(b"\0");
    h.update(action.as_bytes());
    h.update(b"\0");
    write_canonical(&mut h, params);
    for u in upstream {
        h.update(b"\0");
        write_canonical(&mut h, u);
    }
    CacheKey(*h.finalize().as_bytes())
}

/// The key of a step's inputs and of the files its `cache.files` matched
/// (`files`, from [`files_digest`]).
pub fn with_files(key: CacheKey, files: &[u8; 32]) -> CacheKey {
    let mut h = blake3::Hasher::new();
    h.update(b"orch-cache-files-v1\0");
    h.update(&key.0);
    h.update(files);
    CacheKey(*h.finalize().as_bytes())
}

/// A digest of the files `globs` match beneath `work_dir` (paths and
/// contents, in path order; a glob that matches nothing counts as such, so
/// a file that appears changes the digest too). Globs are relative
/// (`orch_model::definition::check_cache_glob`); `*` does not cross a `/`, `**` does.
/// Only regular files count; a match that resolves outside the work
/// directory (through a symbolic link) is refused. A `${params.NAME}` in a
/// glob is resolved in `scope` first.
///
/// # Errors
/// Why the digest cannot be made: a glob that does not resolve or parse, a
/// file that cannot be read, or one outside the work directory. The step
/// then runs without the cache.
pub fn files_digest(
    work_dir: &Path,
    globs: &[String],
    scope: &dyn crate::resolve::Scope,
) -> Result<[u8; 32], String> {
    let base = std::fs::canonicalize(work_dir)
        .map_err(|e| format!("the work directory `{}`: {e}", work_dir.display()))?;
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let mut h = blake3::Hasher::new();
    h.update(b"orch-files-v1\0");
    for g in globs {
        let resolved;
        let g = if g.contains("${") {
            resolved = match crate::resolve::resolve_string(g, scope)? {
                Value::String(s) => s,
                other => other.to_string(),
            };
            &resolved
        } else {
            g
        };
        orch_model::definition::check_cache_glob(g).map_err(|m| format!("cache.files: {m}"))?;
        let full = format!("{}/{g}", glob::Pattern::escape(&base.to_string_lossy()));
        let paths =
            glob::glob_with(&full, opts).map_err(|e| format!("cache.files `{g}`: {}", e.msg))?;
        let mut found: Vec<(String, PathBuf)> = Vec::new();
        for p in paths {
            let p = p.map_err(|e| format!("cache.files `{g}`: {e}"))?;
            let real = std::fs::canonicalize(&p)
                .map_err(|e| format!("cache.files `{g}`: `{}`: {e}", p.display()))?;
            let Ok(rel) = real.strip_prefix(&base) else {
                return Err(format!(
                    "cache.files `{g}` matched `{}`, which leads outside the work directory",
                    p.display()
                ));
            };
            if real.is_file() {
                found.push((rel.to_string_lossy().into_owned(), real));
            }
        }
        found.sort();
        found.dedup();
        h.update(g.as_bytes());
        h.update(&(found.len() as u64).to_le_bytes());
        for (rel, real) in found {
            let mut file =
                std::fs::File::open(&real).map_err(|e| format!("cache.files: `{rel}`: {e}"))?;
            let mut content = blake3::Hasher::new();
            std::io::copy(&mut file, &mut content)
                .map_err(|e| format!("cache.files: `{rel}`: {e}"))?;
            h.update(&(rel.len() as u64).to_le_bytes());
            h.update(rel.as_bytes());
            h.update(content.finalize().as_bytes());
        }
    }
    Ok(*h.finalize().as_bytes())
}

/// Where cached results live. Implementations must be safe to share between
/// runs; a failure to read or write the cache never fails a step (the step
/// just runs).
pub trait ResultCache: Send + Sync + fmt::Debug {
    /// The stored result for `key`; with `stored_since`, only one stored at
    /// or after that time (a step's `cache.ttl`: an older entry is a miss).
    /// A cache that cannot tell when an entry was stored answers `None`
    /// when asked for a bound.
    fn get(&self, key: &CacheKey, stored_since: Option<DateTime<Utc>>) -> Option<Value>;
    /// Stores a result.
    fn put(&self, key: &CacheKey, value: &Value);
    /// Every key with its size in bytes.
    fn list(&self) -> Vec<(CacheKey, u64)>;
    /// Removes every entry; returns how many.
    fn clear(&self) -> usize;
}

/// An in-process cache.
#[derive(Debug, Default)]
pub struct MemoryCache {
    entries: Mutex<BTreeMap<CacheKey, (Value, DateTime<Utc>)>>,
}

impl MemoryCache {
    /// Moves the time every entry was stored `by` into the past (to test
    /// `ttl` without waiting).
    pub fn age(&self, by: std::time::Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        if let Ok(mut m) = self.entries.lock() {
            for (_, at) in m.values_mut() {
                *at = at
                    .checked_sub_signed(by)
                    .unwrap_or(DateTime::<Utc>::MIN_UTC);
            }
        }
    }
}

impl ResultCache for MemoryCache {
    fn get(&self, key: &CacheKey, stored_since: Option<DateTime<Utc>>) -> Option<Value> {
        let m = self.entries.lock().ok()?;
        let (v, at) = m.get(key)?;
        (stored_since.is_none_or(|s| *at >= s)).then(|| v.clone())
    }
    fn put(&self, key: &CacheKey, value: &Value) {
        if let Ok(mut m) = self.entries.lock() {
            m.insert(*key, (value.clone(), Utc::now()));
        }
    }
    fn list(&self) -> Vec<(CacheKey, u64)> {
        self.entries
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(k, (v, _))| (*k, v.to_string().len() as u64))
                    .collect()
            })
            .unwrap_or_default()
    }
    fn clear(&self) -> usize {
        self.entries
            .lock()
            .map(|mut m| std::mem::take(&mut *m).len())
            .unwrap_or(0)
    }
}

/// A cache in a directory: one `KEY.json` file per entry, written atomically
/// and durably ([`orch_resources::atomic::write_file`]),
/// so it survives between runs of `orch run` (until the durable store of a
/// later issue takes over).
#[derive(Debug, Clone)]
pub struct DirCache {
    dir: PathBuf,
}

impl DirCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }
}

impl ResultCache for DirCache {
    fn get(&self, key: &CacheKey, stored_since: Option<DateTime<Utc>>) -> Option<Value> {
        let path = self.path(key);
        if let Some(since) = stored_since {
            // The entry's file is replaced whole when it is stored.
            let at: DateTime<Utc> = std::fs::metadata(&path).ok()?.modified().ok()?.into();
            if at < since {
                return None;
            }
        }
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn put(&self, key: &CacheKey, value: &Value) {
        if std::fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        // A failed write leaves no temporary file and the old entry, if any (a cache miss later).
        let _ = orch_resources::atomic::write_file(&self.path(key), value.to_string().as_bytes());
    }

    fn list(&self) -> Vec<(CacheKey, u64)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<(CacheKey, u64)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let key = CacheKey::parse(name.strip_suffix(".json")?)?;
                Some((key, e.metadata().map(|m| m.len()).unwrap_or(0)))
            })
            .collect();
        out.sort();
        out
    }

    fn clear(&self) -> usize {
        self.list()
            .into_iter()
            .filter(|(k, _)| std::fs::remove_file(self.path(k)).is_ok())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_memory_entry_older_than_the_bound_is_a_miss() {
        let c = MemoryCache::default();
        let k = cache_key("m", "a", &json!({}), &[]);
        c.put(&k, &json!(1));
        let since = Utc::now() - chrono::Duration::hours(1);
        assert_eq!(c.get(&k, Some(since)), Some(json!(1)));
        c.age(std::time::Duration::from_secs(7200));
        assert_eq!(c.get(&k, Some(since)), None);
        assert_eq!(c.get(&k, None), Some(json!(1)), "no bound: still served");
    }

    /// A scope with one parameter, `dir`.
    struct Params(Value);

    impl crate::resolve::Scope for Params {
        fn param(&self, name: &str) -> Option<&Value> {
            self.0.get(name)
        }
        fn result(&self, _: &str) -> Option<&Value> {
            None
        }
        fn status(&self, _: &str) -> Option<orch_model::TaskStatus> {
            None
        }
        fn run_id(&self) -> String {
            String::new()
        }
        fn project_path(&self) -> Option<String> {
            None
        }
    }

    #[test]
    fn the_files_digest_follows_contents_names_and_new_files() {
        let scope = Params(json!({"dir": "data", "up": ".."}));
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("data/deep")).expect("mkdir");
        std::fs::write(d.join("data/a.csv"), "1,2\n").expect("write");
        std::fs::write(d.join("data/deep/b.csv"), "3\n").expect("write");
        std::fs::write(d.join("data/notes.txt"), "x").expect("write");
        let globs = ["data/*.csv".to_owned()];
        let digest = || files_digest(d, &globs, &scope).expect("digest");
        let first = digest();
        assert_eq!(digest(), first, "the same files, the same digest");
        // Not matched by `data/*.csv`: a deeper file and another extension.
        std::fs::write(d.join("data/deep/b.csv"), "changed").expect("write");
        std::fs::write(d.join("data/notes.txt"), "changed").expect("write");
        assert_eq!(digest(), first);
        std::fs::write(d.join("data/a.csv"), "1,2,3\n").expect("write");
        let changed = digest();
        assert_ne!(changed, first, "a changed file");
        std::fs::write(d.join("data/c.csv"), "").expect("write");
        assert_ne!(digest(), changed, "a new file");
        let deep = files_digest(d, &["data/**/*.csv".to_owned()], &scope).expect("digest");
        std::fs::write(d.join("data/deep/b.csv"), "again").expect("write");
        assert_ne!(
            files_digest(d, &["data/**/*.csv".to_owned()], &scope).expect("digest"),
            deep,
            "** crosses directories"
        );
        // A parameter in a glob is resolved first, and checked like any glob.
        assert_eq!(
            files_digest(d, &["${params.dir}/*.csv".to_owned()], &scope),
            files_digest(d, &["data/*.csv".to_owned()], &scope)
        );
        let e = files_digest(d, &["${params.up}/*.csv".to_owned()], &scope).expect_err("..");
        assert!(e.contains("`..` component"), "{e}");
        // A link that leads out of the work directory is refused.
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("x.csv"), "secret").expect("write");
        std::os::unix::fs::symlink(outside.path().join("x.csv"), d.join("data/link.csv"))
            .expect("symlink");
        let e = files_digest(d, &globs, &scope).expect_err("outside");
        assert!(e.contains("leads outside the work directory"), "{e}");
        assert!(files_digest(d, &["../x/*.csv".to_owned()], &scope).is_err());
    }

    #[test]
    fn keys_are_canonical_and_sensitive() {
        let a = cache_key(
            "m",
            "a",
            &json!({"x": 1, "y": [1, {"b": 2, "a": 1}]}),
            &[&json!({"r": 1})],
        );
        let b = cache_key(
            "m",
            "a",
            &json!({"y": [1, {"a": 1, "b": 2}], "x": 1}),
            &[&json!({"r": 1})],
        );
        assert_eq!(a, b, "key order does not matter");
        assert_ne!(
            a,
            cache_key(
                "m",
                "a",
                &json!({"x": 2, "y": [1, {"a": 1, "b": 2}]}),
                &[&json!({"r": 1})]
            )
        );
        assert_ne!(
            a,
            cache_key(
                "m",
                "b",
                &json!({"x": 1, "y": [1, {"a": 1, "b": 2}]}),
                &[&json!({"r": 1})]
            )
        );
        assert_ne!(
            a,
            cache_key(
                "m",
                "a",
                &json!({"x": 1, "y": [1, {"a": 1, "b": 2}]}),
                &[&json!({"r": 2})]
            )
        );
        assert_eq!(CacheKey::parse(&a.to_string()), Some(a));
    }

    #[test]
    fn dir_cache_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = DirCache::new(dir.path().join("cache"));
        let k = cache_key("m", "a", &json!({}), &[]);
        assert_eq!(c.get(&k, None), None);
        c.put(&k, &json!({"v": 1}));
        assert_eq!(c.get(&k, None), Some(json!({"v": 1})));
        c.put(&k, &json!({"v": 2}));
        assert_eq!(c.get(&k, None), Some(json!({"v": 2})));
        let hour = chrono::Duration::hours(1);
        assert_eq!(c.get(&k, Some(Utc::now() - hour)), Some(json!({"v": 2})));
        assert_eq!(
            c.get(&k, Some(Utc::now() + hour)),
            None,
            "stored before the bound"
        );
        // Replaced in place: no temporary file is left beside the entry.
        let names: Vec<_> = std::fs::read_dir(c.dir())
            .expect("the cache directory lists")
            .map(|e| e.expect("an entry").file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from(format!("{k}.json"))]);
        assert_eq!(c.list().len(), 1);
        assert_eq!(c.clear(), 1);
        assert_eq!(c.get(&k, None), None);
    }
}
