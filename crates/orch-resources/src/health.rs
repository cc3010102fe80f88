//! Usage figures and health in the seed's JSON shapes.

use crate::ResourceManager;
use chrono::Utc;
use orch_model::{Resource, ResourceStatus, ResourceType};
use serde_json::{Map, Value, json};

impl ResourceManager {
    /// Usage of one resource (`{resource_id, name, type, status, capacity,
    /// allocated, utilization, current_users, total_allocations}`, `{}` when
    /// unknown) or, without an id, of all (`{total_resources,
    /// total_allocations, resources_by_type, utilization_summary}`), as the seed.
    pub fn get_resource_usage(&self, resource_id: Option<&str>) -> Value {
        let resources = self.list_resources();
        let allocations = self.lock().allocations.len();
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
            None => {
                let mut by_type = Map::new();
                let mut summary = Map::new();
                for t in ResourceType::ALL {
                    let of: Vec<&Resource> =
                        resources.iter().filter(|r| r.resource_type == *t).collect();
                    by_type.insert(t.as_str().into(), json!(of.len()));
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
                        summary.insert(t.as_str().into(), json!((avg * 100.0).round() / 100.0));
                    }
                }
                json!({
                    "total_resources": resources.len(),
                    "total_allocations": allocations,
                    "resources_by_type": by_type,
                    "utilization_summary": summary,
                })
            }
        }
    }

    /// Health as the seed reports it: `{overall_status, timestamp, resources:
    /// {id: {status, utilization, users, healthy}}, issues}`; a resource over
    /// 90 % used or not available is an issue; 1–4 issues are `degraded`, 5 or
    /// more `unhealthy`.
    pub fn health_check(&self) -> Value {
        let mut issues = Vec::new();
        let mut per = Map::new();
        for r in self.list_resources() {
            let util = r.utilization();
            let over = util.values().any(|u| *u > 90.0);
            if over {
                issues.push(format!("Resource {} is over 90% utilized", r.name));
            }
            if r.status != ResourceStatus::Available {
                issues.push(format!("Resource {} is not available", r.name));
            }
            per.insert(
                r.id.clone(),
                json!({"status": r.status, "utilization": util, "users": r.current_users.len(), "healthy": !over && r.status == ResourceStatus::Available}),
            );
        }
        let overall = match issues.len() {
            0 => "healthy",
            1..=4 => "degraded",
            _ => "unhealthy",
        };
        json!({"overall_status": overall, "timestamp": Utc::now(), "resources": per, "issues": issues})
    }
}
