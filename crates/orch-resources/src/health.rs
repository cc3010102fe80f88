//! Usage figures and health in the seed's JSON shapes; health is typed
//! ([`ResourceHealth`]) and serializes to that shape.

use crate::ResourceManager;
use chrono::{DateTime, Utc};
use orch_model::{HealthStatus, Resource, ResourceStatus, ResourceType};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The resource manager's health ([`ResourceManager::health_check`]),
/// serialized as the seed's `{overall_status, timestamp, resources: {id:
/// {status, utilization, users, healthy}}, issues}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceHealth {
    /// `healthy` without issues, `degraded` with 1 to 4, `unhealthy` with 5 or more.
    pub overall_status: HealthStatus,
    /// When it was taken.
    pub timestamp: DateTime<Utc>,
    /// One entry per resource, in the manager's order.
    pub resources: ResourceHealthMap,
    /// One line per problem (`Resource NAME is over 90% utilized`,
    /// `Resource NAME is not available`).
    pub issues: Vec<String>,
}

/// The health of one resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceHealthEntry {
    /// The resource's id (the key of the entry in the JSON object).
    #[serde(skip)]
    pub id: String,
    /// Its status.
    pub status: ResourceStatus,
    /// Percent used, per capacity key.
    pub utilization: BTreeMap<String, f64>,
    /// How many users hold some of it.
    pub users: usize,
    /// Available and no key over 90 % used.
    pub healthy: bool,
}

/// The health of every resource, in the manager's order; serialized as an
/// object keyed by resource id (`{id: {status, utilization, users, healthy}}`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResourceHealthMap(pub Vec<ResourceHealthEntry>);

impl ResourceHealthMap {
    /// The entry of one resource.
    pub fn get(&self, id: &str) -> Option<&ResourceHealthEntry> {
        self.0.iter().find(|e| e.id == id)
    }

    /// The entries, in the manager's order.
    pub fn iter(&self) -> std::slice::Iter<'_, ResourceHealthEntry> {
        self.0.iter()
    }

    /// How many resources there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for ResourceHealthMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for e in &self.0 {
            map.serialize_entry(&e.id, e)?;
        }
        map.end()
    }
}

/// Usage of all resources (seed: `get_resource_usage()` without an id).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceUsage {
    /// How many resources are registered.
    pub total_resources: usize,
    /// Allocations held now.
    pub total_allocations: usize,
    /// Resources per type (every type, 0 included).
    pub resources_by_type: BTreeMap<String, usize>,
    /// Mean utilization (0-1, two decimals) per type that has resources.
    pub utilization_summary: BTreeMap<String, f64>,
}

impl ResourceManager {
    /// Usage of one resource (`{resource_id, name, type, status, capacity,
    /// allocated, utilization, current_users, total_allocations}`, `{}` when
    /// unknown) or, without an id, of all (`{total_resources,
    /// total_allocations, resources_by_type, utilization_summary}`), as the seed.
    pub fn get_resource_usage(&self, resource_id: Option<&str>) -> Value {
        let resources = self.list_resources();
        match resource_id {
            Some(id) => match resources.iter().find(|r| r.id == id) {
                Some(r) => json!({
                    "resource_id": r.id,
                    "name": r.name,
                    "type": r.resource_type,
                    "status": r.status,
                    "capacity": r.capacity,
                    "allocated": r.allocated,
                    "utilization": r.utilization(),
                    "current_users": r.current_users.len(),
                    "total_allocations": r.total_allocations,
                }),
                None => json!({}),
            },
            None => serde_json::to_value(self.usage_summary()).unwrap_or(Value::Null),
        }
    }

    /// Usage of all resources, typed (what `get_resource_usage(None)` gives
    /// as JSON).
    pub fn usage_summary(&self) -> ResourceUsage {
        let resources = self.list_resources();
        let total_allocations = self.lock().allocations.len();
        let mut resources_by_type = BTreeMap::new();
        let mut utilization_summary = BTreeMap::new();
        for t in ResourceType::ALL {
            let of: Vec<&Resource> = resources.iter().filter(|r| r.resource_type == *t).collect();
            resources_by_type.insert(t.as_str().to_owned(), of.len());
            if !of.is_empty() {
                let means: Vec<f64> = of
                    .iter()
                    .map(|r| {
                        let u = r.utilization();
                        if u.is_empty() {
                            0.0
                        } else {
                            u.values().sum::<f64>() / u.len() as f64
                        }
                    })
                    .collect();
                let avg = means.iter().sum::<f64>() / means.len() as f64;
                utilization_summary.insert(t.as_str().to_owned(), (avg * 100.0).round() / 100.0);
            }
        }
        ResourceUsage {
            total_resources: resources.len(),
            total_allocations,
            resources_by_type,
            utilization_summary,
        }
    }

    /// Health as the seed reports it: `{overall_status, timestamp, resources:
    /// {id: {status, utilization, users, healthy}}, issues}`; a resource over
    /// 90 % used or not available is an issue; 1–4 issues are `degraded`, 5 or
    /// more `unhealthy`.
    pub fn health_check(&self) -> ResourceHealth {
        let mut issues = Vec::new();
        let mut resources = Vec::new();
        for r in self.list_resources() {
            let utilization = r.utilization();
            let over = utilization.values().any(|u| *u > 90.0);
            if over {
                issues.push(format!("Resource {} is over 90% utilized", r.name));
            }
            let available = r.status == ResourceStatus::Available;
            if !available {
                issues.push(format!("Resource {} is not available", r.name));
            }
            resources.push(ResourceHealthEntry {
                id: r.id,
                status: r.status,
                utilization,
                users: r.current_users.len(),
                healthy: !over && available,
            });
        }
        let overall_status = match issues.len() {
            0 => HealthStatus::Healthy,
            1..=4 => HealthStatus::Degraded,
            _ => HealthStatus::Unhealthy,
        };
        ResourceHealth {
            overall_status,
            timestamp: Utc::now(),
            resources: ResourceHealthMap(resources),
            issues,
        }
    }
}
