//! Result caching: a step with `cache: true` whose inputs hash to a stored key is not run again.
//!
//! The key is blake3 over the step's module, action, resolved parameters and
//! the results of its dependencies, each written as canonical JSON (object
//! keys sorted), so the same inputs always give the same key and any change
//! gives another.

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

/// Where cached results live. Implementations must be safe to share between
/// runs; a failure to read or write the cache never fails a step (the step
/// just runs).
pub trait ResultCache: Send + Sync + fmt::Debug {
    /// The stored result for `key`.
    fn get(&self, key: &CacheKey) -> Option<Value>;
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
    entries: Mutex<BTreeMap<CacheKey, Value>>,
}

impl ResultCache for MemoryCache {
    fn get(&self, key: &CacheKey) -> Option<Value> {
        self.entries.lock().ok()?.get(key).cloned()
    }
    fn put(&self, key: &CacheKey, value: &Value) {
        if let Ok(mut m) = self.entries.lock() {
            m.insert(*key, value.clone());
        }
    }
    fn list(&self) -> Vec<(CacheKey, u64)> {
        self.entries
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (*k, v.to_string().len() as u64))
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
    fn get(&self, key: &CacheKey) -> Option<Value> {
        let text = std::fs::read_to_string(self.path(key)).ok()?;
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
        assert_eq!(c.get(&k), None);
        c.put(&k, &json!({"v": 1}));
        assert_eq!(c.get(&k), Some(json!({"v": 1})));
        c.put(&k, &json!({"v": 2}));
        assert_eq!(c.get(&k), Some(json!({"v": 2})));
        // Replaced in place: no temporary file is left beside the entry.
        let names: Vec<_> = std::fs::read_dir(c.dir())
            .expect("the cache directory lists")
            .map(|e| e.expect("an entry").file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from(format!("{k}.json"))]);
        assert_eq!(c.list().len(), 1);
        assert_eq!(c.clear(), 1);
        assert_eq!(c.get(&k), None);
    }
}
