//! `Project` and `Resource`, the seed's project and resource records.

use crate::enums::{ProjectStatus, ProjectType, ResourceStatus, ResourceType};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A project (seed: `Project`), stored at `<project>/.orch/project.json` with
/// the seed's keys in the seed's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Project {
    /// Unique name; also the default directory name.
    pub name: String,
    /// What the project is.
    pub description: String,
    /// Its kind.
    #[serde(rename = "type")]
    pub project_type: ProjectType,
    /// Absolute path of its directory.
    pub path: String,
    /// Its life-cycle state.
    pub status: ProjectStatus,
    /// Its version.
    pub version: String,
    /// The template it was created from.
    pub template: Option<String>,
    /// Configuration (the template's `default_config`, then the user's changes).
    pub config: Map<String, Value>,
    /// Names of its workflows.
    pub workflows: Vec<String>,
    /// Names of workflows running now.
    pub active_workflows: Vec<String>,
    /// Modules its workflows need.
    pub required_modules: Vec<String>,
    /// Who made it.
    pub author: String,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Milestones by key, each with its data and when it was reached.
    pub milestones: Map<String, Value>,
    /// Metrics by key.
    pub metrics: Map<String, Value>,
}

impl Default for Project {
    fn default() -> Self {
        let now = Utc::now();
        Self {
            name: String::new(),
            description: String::new(),
            project_type: ProjectType::Custom,
            path: String::new(),
            status: ProjectStatus::Planning,
            version: "1.0.0".into(),
            template: None,
            config: Map::new(),
            workflows: Vec::new(),
            active_workflows: Vec::new(),
            required_modules: Vec::new(),
            author: String::new(),
            tags: Vec::new(),
            created_at: now,
            updated_at: now,
            milestones: Map::new(),
            metrics: Map::new(),
        }
    }
}

/// A resource that can be allocated (seed: `Resource`). Resource ids are
/// names chosen by the operator (`system_cpu`), not UUIDs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resource {
    /// Unique id, e.g. `system_cpu`.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Its kind.
    #[serde(rename = "type")]
    pub resource_type: ResourceType,
    /// What it is.
    pub description: String,
    /// Its state.
    pub status: ResourceStatus,
    /// Total amounts per unit key (`cores`, `gb`, `requests_per_minute`, ...).
    pub capacity: BTreeMap<String, f64>,
    /// Amounts allocated now, per unit key.
    pub allocated: BTreeMap<String, f64>,
    /// Operator limits (e.g. `max_concurrent_users`).
    pub limits: Map<String, Value>,
    /// How many allocations it has served.
    pub total_allocations: u64,
    /// Users holding allocations now.
    pub current_users: Vec<String>,
    /// Free-form metadata.
    pub metadata: Map<String, Value>,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl Default for Resource {
    fn default() -> Self {
        let now = Utc::now();
        Self {
            id: String::new(),
            name: String::new(),
            resource_type: ResourceType::Cpu,
            description: String::new(),
            status: ResourceStatus::Available,
            capacity: BTreeMap::new(),
            allocated: BTreeMap::new(),
            limits: Map::new(),
            total_allocations: 0,
            current_users: Vec::new(),
            metadata: Map::new(),
            tags: Vec::new(),
            created_at: now,
            updated_at: now,
        }
    }
}

impl Resource {
    /// Utilization per unit key in percent (seed: `get_utilization`), for keys with positive capacity.
    pub fn utilization(&self) -> BTreeMap<String, f64> {
        self.capacity
            .iter()
            .filter(|(_, c)| **c > 0.0)
            .map(|(k, c)| {
                (
                    k.clone(),
                    self.allocated.get(k).copied().unwrap_or(0.0) / c * 100.0,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_json_uses_the_seed_keys_in_order() {
        let p = Project {
            name: "chatbot-analysis".into(),
            project_type: ProjectType::AiAnalysis,
            ..Project::default()
        };
        let v = serde_json::to_value(&p).expect("ser");
        let keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "name",
                "description",
                "type",
                "path",
                "status",
                "version",
                "template",
                "config",
                "workflows",
                "active_workflows",
                "required_modules",
                "author",
                "tags",
                "created_at",
                "updated_at",
                "milestones",
                "metrics"
            ]
        );
        assert_eq!(v["type"], "ai_analysis");
        let seed = r#"{"name": "x", "type": "data_pipeline", "status": "active"}"#;
        let q: Project = serde_json::from_str(seed).expect("partial seed file loads");
        assert_eq!(q.status, ProjectStatus::Active);
    }

    #[test]
    fn resource_utilization() {
        let mut r = Resource {
            id: "system_cpu".into(),
            resource_type: ResourceType::Cpu,
            ..Resource::default()
        };
        r.capacity.insert("cores".into(), 4.0);
        r.allocated.insert("cores".into(), 1.0);
        assert_eq!(r.utilization().get("cores"), Some(&25.0));
        assert_eq!(serde_json::to_value(&r).expect("ser")["type"], "cpu");
    }
}
