//! The resources file in the seed's format: loading it, and saving it atomically.

use crate::ResourceManager;
use chrono::Utc;
use orch_model::{OrchestrationError, Resource, Result};
use serde_json::{Map, Value, json};
use std::path::Path;

impl ResourceManager {
    /// Loads the resources file (the seed's format: `{"resources": {id: Resource}, "updated_at"}`).
    ///
    /// # Errors
    /// `Io` when the file cannot be read, `InvalidParameters` when it is malformed.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| OrchestrationError::Io {
            message: format!("cannot read resources file {}: {e}", path.display()),
        })?;
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            OrchestrationError::invalid_parameters(format!(
                "resources file {}: invalid JSON: {e}",
                path.display()
            ))
        })?;
        let map = v
            .get("resources")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                OrchestrationError::invalid_parameters(format!(
                    "resources file {}: expected {{\"resources\": {{ID: RESOURCE, ...}}}}",
                    path.display()
                ))
            })?;
        let mut resources = Vec::with_capacity(map.len());
        for (id, r) in map {
            let mut res: Resource = serde_json::from_value(r.clone()).map_err(|e| {
                OrchestrationError::invalid_parameters(format!(
                    "resources file {}: resource `{id}`: {e}",
                    path.display()
                ))
            })?;
            if res.id.is_empty() {
                res.id = id.clone();
            }
            res.allocated.clear();
            res.current_users.clear();
            resources.push(res);
        }
        Self::with_resources(resources)
    }

    /// Saves the resources in the seed's format, atomically and durably (see [`crate::atomic`]).
    ///
    /// # Errors
    /// `Io` when the file cannot be written; the old file is then unchanged.
    pub fn save(&self, path: &Path) -> Result<()> {
        let map: Map<String, Value> = self
            .list_resources()
            .into_iter()
            .map(|r| {
                (
                    r.id.clone(),
                    serde_json::to_value(&r).unwrap_or(Value::Null),
                )
            })
            .collect();
        let text =
            serde_json::to_string_pretty(&json!({"resources": map, "updated_at": Utc::now()}))
                .unwrap_or_default();
        crate::atomic::write_file(path, text.as_bytes()).map_err(|e| OrchestrationError::Io {
            message: format!("cannot write {}: {e}", path.display()),
        })
    }
}
