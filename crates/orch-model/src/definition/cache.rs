//! A step's `cache:` options (and `defaults: cache:`, the same for the steps that do not set their own): `true`, or `{files: [GLOB...], ttl: DURATION}`, which puts the contents of files into the step's cache key and bounds how long an entry serves.

use crate::duration::serde_secs;
use serde::Serialize;
use serde::ser::Serializer;
use std::time::Duration;

/// How a step with caching on is cached (`cache: true` is the default of
/// every option). A step with caching off has none (`WorkflowStep::cache`
/// is `None`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct CacheSpec {
    /// Globs (`data/*.csv`, `src/**/*.rs`) relative to the run's work
    /// directory; the contents of every file they match are part of the key,
    /// so a changed, added or removed file is a miss. Never absolute, never
    /// with a `..` component.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// How long an entry serves after it was stored; `None`: until cleared.
    #[serde(skip_serializing_if = "Option::is_none", with = "serde_secs::option")]
    pub ttl: Option<Duration>,
}

impl CacheSpec {
    /// Whether these are the options of `cache: true`.
    pub fn is_plain(&self) -> bool {
        *self == Self::default()
    }
}

/// Serializes a step's `cache` as it is written: `true`, or the map.
pub(crate) fn serialize_cache<S: Serializer>(
    cache: &Option<Box<CacheSpec>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match cache {
        None => s.serialize_bool(false),
        Some(spec) if spec.is_plain() => s.serialize_bool(true),
        Some(spec) => spec.serialize(s),
    }
}

/// Serializes `defaults.cache` when it is set: as a step's `cache`.
pub(crate) fn serialize_default_cache<S: Serializer>(
    cache: &Option<Option<Box<CacheSpec>>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match cache {
        Some(c) => serialize_cache(c, s),
        None => s.serialize_none(),
    }
}

/// Why `pattern` cannot be a `cache.files` glob: it is empty, absolute, or
/// has a `..` component (it would reach outside the work directory), or
/// it is not a valid glob.
pub fn check_cache_glob(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("a `cache.files` pattern cannot be empty".to_owned());
    }
    if pattern.starts_with('/') || pattern.starts_with('\\') {
        return Err(format!(
            "`{pattern}` is absolute; `cache.files` patterns are relative to the run's work directory"
        ));
    }
    if pattern.split(['/', '\\']).any(|c| c == "..") {
        return Err(format!(
            "`{pattern}` has a `..` component; `cache.files` patterns stay inside the run's work directory"
        ));
    }
    if pattern.contains('\0') {
        return Err("a `cache.files` pattern cannot hold a NUL character".to_owned());
    }
    glob::Pattern::new(pattern)
        .map(drop)
        .map_err(|e| format!("`{pattern}` is not a valid glob: {}", e.msg))
}
