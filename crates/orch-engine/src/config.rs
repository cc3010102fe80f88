//! The engine's configuration: the seed's JSON config keys and environment variables.

use orch_model::OrchestrationError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The seed's configuration file (all keys optional). Paths are relative to
/// the current directory; absent ones default under `ORCH_HOME`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Most tasks one workflow runs at once (default 4).
    pub max_workers: Option<usize>,
    /// Where workflow definitions live (default `$ORCH_HOME/workflows`).
    pub workflows_dir: Option<PathBuf>,
    /// Where projects are created (default `$ORCH_HOME/projects`).
    pub projects_dir: Option<PathBuf>,
    /// Where user templates live (default `$ORCH_HOME/templates`).
    pub templates_dir: Option<PathBuf>,
    /// The resources file (default `$ORCH_HOME/resources.json` when it exists; the machine's resources otherwise).
    pub resource_config: Option<PathBuf>,
    /// Whether `get_system_status` includes the `performance` section (default true).
    pub performance_monitoring: Option<bool>,
    /// Seconds a session lives when it sets no timeout of its own (default 3600).
    pub session_timeout: Option<u64>,
    /// Seconds between sweeps that close expired sessions (default 300).
    pub cleanup_interval: Option<u64>,
    /// The store URL: `sqlite://PATH` (the default, `sqlite://$ORCH_HOME/orch.db`) or `memory://`.
    pub store_url: Option<String>,
    /// Whether `cache: true` steps are served from and stored in the result
    /// cache (kept in the store) when they run through the engine: its
    /// workflows, project workflows and their sub-workflows (default true).
    /// False runs every step and stores nothing.
    pub cache: Option<bool>,
    /// How many ended (closed or expired) sessions the engine keeps in memory
    /// for `get_session` and `list_sessions`, oldest forgotten first (default
    /// 1000, as many as the finished runs a workflow manager remembers). The
    /// store keeps every session's record (`session_history`).
    pub session_history: Option<usize>,
}

/// Every key of the configuration file, in the order of [`EngineConfig`].
pub const CONFIG_KEYS: &[&str] = &[
    "max_workers",
    "workflows_dir",
    "projects_dir",
    "templates_dir",
    "resource_config",
    "performance_monitoring",
    "session_timeout",
    "cleanup_interval",
    "store_url",
    "cache",
    "session_history",
];

impl EngineConfig {
    /// Reads a JSON config file.
    ///
    /// # Errors
    /// `Io` when it cannot be read; `InvalidParameters` naming the file, the
    /// line and the key when it is malformed or has an unknown key.
    pub fn from_file(path: &Path) -> Result<Self, OrchestrationError> {
        let text = std::fs::read_to_string(path).map_err(|e| OrchestrationError::Io {
            message: format!("cannot read config file `{}`: {e}", path.display()),
        })?;
        serde_json::from_str(&text).map_err(|e| {
            OrchestrationError::invalid_parameters(format!(
                "config file `{}`: {e} (known keys: {})",
                path.display(),
                CONFIG_KEYS.join(", ")
            ))
        })
    }

    /// Fills what is unset from the environment: `ORCH_HOME` (alias
    /// `CODOMYRMEX_ORCHESTRATION_DIR`) places the defaults, `ORCH_MAX_WORKERS`
    /// (alias `CODOMYRMEX_MAX_WORKERS`), `CODOMYRMEX_RESOURCE_CONFIG`,
    /// `ORCH_STORE_URL`. Returns the home directory: `ORCH_HOME` when set,
    /// else the one [`discover_home`] finds from the current directory.
    ///
    /// # Errors
    /// `InvalidParameters` for a variable that does not parse.
    pub fn apply_env(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<PathBuf, OrchestrationError> {
        let pick = |a: &str, b: &str| {
            env(a)
                .filter(|v| !v.is_empty())
                .or_else(|| env(b).filter(|v| !v.is_empty()))
        };
        let home = match pick("ORCH_HOME", "CODOMYRMEX_ORCHESTRATION_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => {
                let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
                discover_home(&cwd, env)
            }
        };
        if self.max_workers.is_none() {
            if let Some(v) = pick("ORCH_MAX_WORKERS", "CODOMYRMEX_MAX_WORKERS") {
                // Name the variable that was actually read.
                let name = if env("ORCH_MAX_WORKERS").is_some_and(|x| !x.is_empty()) {
                    "ORCH_MAX_WORKERS"
                } else {
                    "CODOMYRMEX_MAX_WORKERS"
                };
                let n: usize = v.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    OrchestrationError::invalid_parameters(format!(
                        "{name}=`{v}` is not a positive whole number; set it to the number of workers, e.g. 4"
                    ))
                })?;
                self.max_workers = Some(n);
            }
        }
        if self.resource_config.is_none() {
            if let Some(v) = pick("ORCH_RESOURCE_CONFIG", "CODOMYRMEX_RESOURCE_CONFIG") {
                self.resource_config = Some(PathBuf::from(v));
            }
        }
        if self.store_url.is_none() {
            self.store_url = env("ORCH_STORE_URL").filter(|v| !v.is_empty());
        }
        Ok(home)
    }
}

/// The file whose presence makes a `.orch` directory an orch home: the default store.
pub const HOME_MARKER: &str = "orch.db";

/// Where orch keeps its state when neither `ORCH_HOME` nor
/// `CODOMYRMEX_ORCHESTRATION_DIR` is set, looking from `cwd`:
///
/// 1. the nearest enclosing orch home: walking up from `cwd` (itself
///    included), the first `DIR/.orch` that holds [`HOME_MARKER`] and is not a
///    project's metadata directory (one holding `project.json`), or the
///    per-user data directory itself (inside one of its projects, say);
/// 2. else the per-user data directory: `$XDG_DATA_HOME/orch` when
///    `XDG_DATA_HOME` is an absolute path, else `$HOME/.local/share/orch`;
/// 3. else (no `HOME`) `./.orch`.
///
/// An enclosing `.orch` counts only when the current user owns it (where
/// the user is known: Linux's `/proc/self`), as git refuses repositories of
/// other users: a `.orch` planted in a shared directory such as `/tmp`
/// must not hand its workflows and history to whoever works below it.
///
/// `env` reads environment variables (`XDG_DATA_HOME`, `HOME`). Nothing is
/// created: the store creates its directory on first use.
#[must_use]
pub fn discover_home(cwd: &Path, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    discover_home_for(cwd, env, current_uid())
}

/// The effective user id of this process, where it can be known without unsafe code.
#[must_use]
pub fn current_uid() -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").ok().map(|m| m.uid())
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Whether `dir` belongs to user `uid` (any owner when the user is unknown).
#[must_use]
pub fn owned_by(dir: &Path, uid: Option<u32>) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        uid.is_none_or(|u| std::fs::metadata(dir).is_ok_and(|m| m.uid() == u))
    }
    #[cfg(not(unix))]
    {
        let _ = (dir, uid);
        true
    }
}

/// [`discover_home`] for the user `uid`.
fn discover_home_for(
    cwd: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    uid: Option<u32>,
) -> PathBuf {
    let set = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let per_user = set("XDG_DATA_HOME")
        .filter(|p| p.is_absolute())
        .map(|data| data.join("orch"))
        .or_else(|| set("HOME").map(|home| home.join(".local/share/orch")));
    for dir in cwd.ancestors() {
        let candidate = dir.join(".orch");
        if candidate.join(HOME_MARKER).is_file()
            && !candidate.join("project.json").exists()
            && owned_by(&candidate, uid)
        {
            return candidate;
        }
        if per_user.as_deref() == Some(dir) {
            return dir.to_path_buf();
        }
    }
    per_user.unwrap_or_else(|| PathBuf::from(".orch"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_fills_gaps_and_aliases_work() {
        let vars = |k: &str| match k {
            "CODOMYRMEX_ORCHESTRATION_DIR" => Some("/srv/orch".to_owned()),
            "CODOMYRMEX_MAX_WORKERS" => Some("8".to_owned()),
            "CODOMYRMEX_RESOURCE_CONFIG" => Some("res.json".to_owned()),
            _ => None,
        };
        let mut c = EngineConfig::default();
        assert_eq!(c.apply_env(&vars).expect("env"), PathBuf::from("/srv/orch"));
        assert_eq!(c.max_workers, Some(8));
        assert_eq!(c.resource_config, Some(PathBuf::from("res.json")));
        // The file's own values win.
        let mut c = EngineConfig {
            max_workers: Some(2),
            ..EngineConfig::default()
        };
        let both = |k: &str| match k {
            "ORCH_MAX_WORKERS" => Some("16".to_owned()),
            "CODOMYRMEX_MAX_WORKERS" => Some("8".to_owned()),
            _ => None,
        };
        c.apply_env(&both).expect("env");
        assert_eq!(c.max_workers, Some(2));
        let mut c = EngineConfig::default();
        c.apply_env(&both).expect("env");
        assert_eq!(c.max_workers, Some(16), "ORCH_ wins over the alias");
        let bad = |k: &str| (k == "ORCH_MAX_WORKERS").then(|| "lots".to_owned());
        let e = EngineConfig::default().apply_env(&bad).expect_err("bad");
        assert!(e.to_string().contains("ORCH_MAX_WORKERS=`lots`"), "{e}");
        let bad_alias = |k: &str| (k == "CODOMYRMEX_MAX_WORKERS").then(|| "0".to_owned());
        let e = EngineConfig::default()
            .apply_env(&bad_alias)
            .expect_err("bad");
        assert!(e.to_string().contains("CODOMYRMEX_MAX_WORKERS=`0`"), "{e}");
    }

    #[test]
    fn home_is_the_nearest_enclosing_home_never_a_project_else_per_user() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let sub = root.join("a/b");
        std::fs::create_dir_all(&sub).expect("mkdir");
        let none = |_: &str| None;
        let user = |k: &str| (k == "HOME").then(|| "/home/u".to_owned());
        let xdg = |k: &str| match k {
            "HOME" => Some("/home/u".to_owned()),
            "XDG_DATA_HOME" => Some("/data".to_owned()),
            _ => None,
        };
        let relative_xdg = |k: &str| match k {
            "HOME" => Some("/home/u".to_owned()),
            "XDG_DATA_HOME" => Some("data".to_owned()),
            _ => None,
        };
        // No enclosing home: the per-user directory.
        assert_eq!(
            discover_home(&sub, &user),
            PathBuf::from("/home/u/.local/share/orch")
        );
        assert_eq!(discover_home(&sub, &xdg), PathBuf::from("/data/orch"));
        assert_eq!(
            discover_home(&sub, &relative_xdg),
            PathBuf::from("/home/u/.local/share/orch"),
            "a relative XDG_DATA_HOME is ignored, as the XDG spec says"
        );
        assert_eq!(discover_home(&sub, &none), PathBuf::from(".orch"));
        // A `.orch` without a store is not a home (e.g. a workflow's output directory).
        std::fs::create_dir_all(root.join("a/.orch")).expect("mkdir");
        assert_eq!(
            discover_home(&sub, &user),
            PathBuf::from("/home/u/.local/share/orch")
        );
        // A home above is found from a subdirectory.
        std::fs::create_dir_all(root.join(".orch")).expect("mkdir");
        std::fs::write(root.join(".orch").join(HOME_MARKER), "").expect("write");
        assert_eq!(discover_home(&sub, &user), root.join(".orch"));
        // A project's metadata directory is never a home, even one holding a store.
        let project = root.join("a");
        std::fs::write(project.join(".orch/project.json"), "{}").expect("write");
        std::fs::write(project.join(".orch").join(HOME_MARKER), "").expect("write");
        assert_eq!(discover_home(&sub, &user), root.join(".orch"));
        // Inside the per-user directory (one of its projects), that directory is the home,
        // even below another home.
        let per_user = root.join("a/b/share");
        let inside = per_user.join("orch/projects/p/src");
        std::fs::create_dir_all(&inside).expect("mkdir");
        let xdg_here = |k: &str| (k == "XDG_DATA_HOME").then(|| per_user.display().to_string());
        assert_eq!(discover_home(&inside, &xdg_here), per_user.join("orch"));
        // A home of another user is passed over.
        let me = current_uid();
        if let Some(me) = me {
            let other = Some(me.wrapping_add(1));
            assert_eq!(
                discover_home_for(&sub, &user, other),
                PathBuf::from("/home/u/.local/share/orch")
            );
            assert_eq!(discover_home_for(&sub, &user, Some(me)), root.join(".orch"));
        }
        // The nearest home wins.
        std::fs::create_dir_all(sub.join(".orch")).expect("mkdir");
        std::fs::write(sub.join(".orch").join(HOME_MARKER), "").expect("write");
        assert_eq!(discover_home(&sub, &user), sub.join(".orch"));
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("c.json");
        std::fs::write(&p, r#"{"max_workers": 4, "max_wokers": 2}"#).expect("write");
        let e = EngineConfig::from_file(&p).expect_err("unknown key");
        assert!(e.to_string().contains("max_wokers"), "{e}");
        std::fs::write(
            &p,
            r#"{"max_workers": 4, "workflows_dir": "./wf", "session_timeout": 60}"#,
        )
        .expect("write");
        let c = EngineConfig::from_file(&p).expect("ok");
        assert_eq!(c.session_timeout, Some(60));
        std::fs::write(&p, r#"{"cache": false, "session_history": 10}"#).expect("write");
        let c = EngineConfig::from_file(&p).expect("ok");
        assert_eq!((c.cache, c.session_history), (Some(false), Some(10)));
    }

    #[test]
    fn the_known_keys_are_every_field() {
        let v = serde_json::to_value(EngineConfig::default()).expect("json");
        let fields: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(fields, CONFIG_KEYS, "in the order of the struct");
    }
}
