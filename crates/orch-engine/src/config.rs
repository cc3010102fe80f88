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
}

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
                "config file `{}`: {e} (known keys: max_workers, workflows_dir, projects_dir, templates_dir, resource_config, performance_monitoring, session_timeout, cleanup_interval, store_url)",
                path.display()
            ))
        })
    }

    /// Fills what is unset from the environment: `ORCH_HOME` (alias
    /// `CODOMYRMEX_ORCHESTRATION_DIR`) places the defaults, `ORCH_MAX_WORKERS`
    /// (alias `CODOMYRMEX_MAX_WORKERS`), `CODOMYRMEX_RESOURCE_CONFIG`,
    /// `ORCH_STORE_URL`. Returns the home directory.
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
        let home = pick("ORCH_HOME", "CODOMYRMEX_ORCHESTRATION_DIR")
            .map_or_else(|| PathBuf::from(".orch"), PathBuf::from);
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
    }
}
