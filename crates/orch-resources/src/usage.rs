//! Reading the resources: listing them with their current allocation, one by id, and what a user holds.

use crate::slot::Slot;
use crate::{ResourceManager, from_units};
use chrono::{DateTime, Utc};
use orch_model::{AllocationId, Resource, ResourceStatus, ResourceType};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// One resource of one of a user's allocations (seed: `get_user_allocations`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserAllocation {
    /// The allocation it belongs to.
    pub allocation_id: AllocationId,
    /// The resource.
    pub resource_id: String,
    /// The resource's name.
    pub resource_name: String,
    /// The resource's type.
    pub resource_type: ResourceType,
    /// What is taken of it, per unit.
    pub allocated: BTreeMap<String, f64>,
    /// When it was granted.
    pub allocated_at: DateTime<Utc>,
    /// When it lapses, if ever.
    pub expires_at: Option<DateTime<Utc>>,
}

impl ResourceManager {
    pub(crate) fn snapshot(slot: &mut Slot, now: Instant) -> Resource {
        slot.refill(now);
        slot.sync_record();
        slot.resource.clone()
    }

    /// Every resource with its current allocation.
    pub fn list_resources(&self) -> Vec<Resource> {
        self.list_resources_filtered(None, None)
    }

    /// The resources of one type and/or in one status (seed: `list_resources(resource_type, status)`).
    pub fn list_resources_filtered(
        &self,
        resource_type: Option<ResourceType>,
        status: Option<ResourceStatus>,
    ) -> Vec<Resource> {
        let now = Instant::now();
        self.with_state(|st| {
            st.slots
                .iter_mut()
                .filter(|s| {
                    resource_type.is_none_or(|t| s.resource.resource_type == t)
                        && status.is_none_or(|x| s.resource.status == x)
                })
                .map(|s| Self::snapshot(s, now))
                .collect()
        })
    }

    /// One resource with its current allocation (seed: `get_resource`); `None` when unknown.
    pub fn get_resource(&self, id: &str) -> Option<Resource> {
        let now = Instant::now();
        self.with_state(|st| {
            st.slots
                .iter_mut()
                .find(|s| s.resource.id == id)
                .map(|s| Self::snapshot(s, now))
        })
    }

    /// What `user_id` holds, one entry per allocation and resource, oldest
    /// first (seed: `get_user_allocations`).
    pub fn get_user_allocations(&self, user_id: &str) -> Vec<UserAllocation> {
        self.with_state(|st| {
            let mut out = Vec::new();
            for h in st
                .allocations
                .values()
                .filter(|h| h.alloc.user_id == user_id)
            {
                for (i, want) in &h.parts {
                    let Some(slot) = st.slots.get(*i) else {
                        continue;
                    };
                    out.push(UserAllocation {
                        allocation_id: h.alloc.id,
                        resource_id: slot.resource.id.clone(),
                        resource_name: slot.resource.name.clone(),
                        resource_type: slot.resource.resource_type,
                        allocated: want
                            .iter()
                            .map(|(k, v)| (k.clone(), from_units(*v)))
                            .collect(),
                        allocated_at: h.alloc.allocated_at,
                        expires_at: h.alloc.expires_at,
                    });
                }
            }
            out
        })
    }
}
