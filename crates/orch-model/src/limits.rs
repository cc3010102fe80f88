//! The one place where every input limit of SPEC §9 lives, with its default.

use serde::{Deserialize, Serialize};

/// Limits enforced while reading and validating workflow definitions.
///
/// Every field has a documented default (see `docs/workflow-format.md`) and can
/// be overridden in configuration or on the command line (`--limit key=value`).
/// Checks happen as early as possible: the byte size before parsing, nesting
/// depth and YAML alias expansion while parsing, the rest while decoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest definition accepted, in bytes (checked before parsing). Default 256 MiB.
    pub max_definition_bytes: u64,
    /// Most steps in one workflow. Default 1,000,000.
    pub max_steps: usize,
    /// Deepest nesting of maps and lists in a definition. Default 64.
    pub max_depth: usize,
    /// Most YAML events that aliases may replay in one document. Default 100,000.
    pub max_yaml_alias_expansion: usize,
    /// Longest single string value, in bytes. Default 1 MiB.
    pub max_string_bytes: usize,
    /// Longest step, workflow or project name, in bytes. Default 256.
    pub max_name_len: usize,
    /// Most retries one step may ask for. Default 100.
    pub max_retries: u32,
    /// Longest timeout or retry delay one step may ask for, in seconds. Default 7 days.
    pub max_timeout_secs: u64,
    /// Most dependencies one step may declare. Default 10,000.
    pub max_dependencies: usize,
    /// Most items of one fan-out (`for_each:` or `matrix:`), checked when a
    /// literal list is loaded and when a list from a step's result is
    /// known. Default 100,000.
    pub max_fanout_items: usize,
    /// Most runs a schedule's catch-up (`catch_up: {policy: all, max}`) or
    /// one `orch backfill` starts. Default 1,000.
    pub max_schedule_runs: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_definition_bytes: 256 * 1024 * 1024,
            max_steps: 1_000_000,
            max_depth: 64,
            max_yaml_alias_expansion: 100_000,
            max_string_bytes: 1024 * 1024,
            max_name_len: 256,
            max_retries: 100,
            max_timeout_secs: 7 * 24 * 3600,
            max_dependencies: 10_000,
            max_fanout_items: 100_000,
            max_schedule_runs: 1_000,
        }
    }
}

impl Limits {
    /// The names accepted by [`Limits::set`], in declaration order.
    pub const KEYS: &'static [&'static str] = &[
        "max_definition_bytes",
        "max_steps",
        "max_depth",
        "max_yaml_alias_expansion",
        "max_string_bytes",
        "max_name_len",
        "max_retries",
        "max_timeout_secs",
        "max_dependencies",
        "max_fanout_items",
        "max_schedule_runs",
    ];

    /// Sets one limit by name from its decimal text, as `--limit key=value` does.
    ///
    /// # Errors
    /// Returns a message naming the key and the accepted keys when the key is
    /// unknown, or the value when it is not a non-negative integer that fits.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        fn num<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String> {
            value.trim().parse::<T>().map_err(|_| {
                format!("limit `{key}`: `{value}` is not a non-negative integer in range")
            })
        }
        match key {
            "max_definition_bytes" => self.max_definition_bytes = num(key, value)?,
            "max_steps" => self.max_steps = num(key, value)?,
            "max_depth" => self.max_depth = num(key, value)?,
            "max_yaml_alias_expansion" => self.max_yaml_alias_expansion = num(key, value)?,
            "max_string_bytes" => self.max_string_bytes = num(key, value)?,
            "max_name_len" => self.max_name_len = num(key, value)?,
            "max_retries" => self.max_retries = num(key, value)?,
            "max_timeout_secs" => self.max_timeout_secs = num(key, value)?,
            "max_dependencies" => self.max_dependencies = num(key, value)?,
            "max_fanout_items" => self.max_fanout_items = num(key, value)?,
            "max_schedule_runs" => self.max_schedule_runs = num(key, value)?,
            _ => {
                return Err(format!(
                    "unknown limit `{key}`; known limits: {}",
                    Self::KEYS.join(", ")
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_known_and_unknown_keys() {
        let mut limits = Limits::default();
        limits.set("max_steps", "10").expect("known key");
        assert_eq!(limits.max_steps, 10);
        let err = limits.set("max_stepz", "10").expect_err("unknown key");
        assert!(err.contains("unknown limit `max_stepz`"), "{err}");
        let err = limits.set("max_depth", "-1").expect_err("negative");
        assert!(err.contains("max_depth"), "{err}");
    }
}
