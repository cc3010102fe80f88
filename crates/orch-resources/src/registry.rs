//! The resources themselves: building records, the machine's or a given set, adding, removing, and setting a resource's status.

use crate::detect::detect_resources;
use crate::slot::Slot;
use crate::{ResourceManager, to_units};
use chrono::Utc;
use orch_model::resources::MAX_RESOURCE_AMOUNT;
use orch_model::{EntityKind, OrchestrationError, Resource, ResourceStatus, ResourceType, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

impl ResourceManager {
    /// A resource record with the given capacities, named after its id.
    pub fn resource(id: &str, kind: ResourceType, capacity: &[(&str, f64)]) -> Resource {
        Resource {
            id: id.to_owned(),
            name: id.to_owned(),
            resource_type: kind,
            capacity: capacity
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            ..Resource::default()
        }
    }

    /// A manager with the machine's resources (see [`detect_resources`]).
    pub fn detect() -> Self {
        let resources = detect_resources(Path::new("."));
        // Detected capacities are always valid; fall back to empty if not.
        Self::with_resources(resources).unwrap_or_default()
    }

    /// A manager with exactly these resources.
    ///
    /// # Errors
    /// `InvalidParameters` for a duplicate id or a bad capacity.
    pub fn with_resources(resources: Vec<Resource>) -> Result<Self> {
        let rm = Self::default();
        for r in resources {
            rm.add_resource(r)?;
        }
        Ok(rm)
    }

    /// Adds a resource. Its `limits.max_concurrent_users`, when set, is how
    /// many users may hold it at once (a further user's request waits or
    /// fails as for lack of capacity; a user who holds it may take more).
    ///
    /// # Errors
    /// `AlreadyExists` for a duplicate id; `InvalidParameters` for a capacity
    /// that is negative, NaN or too large, or a `max_concurrent_users` that
    /// is not a whole number.
    pub fn add_resource(&self, resource: Resource) -> Result<()> {
        let mut capacity = BTreeMap::new();
        for (k, v) in &resource.capacity {
            let u = to_units(*v).ok_or_else(|| {
                OrchestrationError::invalid_parameters(format!(
                    "resource `{}`: capacity {k} = {v} must be a number from 0 to {MAX_RESOURCE_AMOUNT}",
                    resource.id
                ))
            })?;
            capacity.insert(k.clone(), u);
        }
        let max_users = match resource.limits.get("max_concurrent_users") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        OrchestrationError::invalid_parameters(format!(
                            "resource `{}`: limits.max_concurrent_users = {v} must be a whole number from 0 up (or null for no limit)",
                            resource.id
                        ))
                    })?,
            ),
        };
        let mut st = self.lock();
        if st.slots.iter().any(|s| s.resource.id == resource.id) {
            return Err(OrchestrationError::AlreadyExists {
                kind: EntityKind::Resource,
                name: resource.id,
                hint: None,
            });
        }
        st.slots.push(Slot {
            resource,
            capacity,
            used: BTreeMap::new(),
            max_users,
            refilled: Instant::now(),
            carry: BTreeMap::new(),
        });
        Self::serve(&mut st);
        drop(st);
        self.changed.notify_waiters();
        Ok(())
    }

    /// Removes a resource that nobody holds.
    ///
    /// # Errors
    /// `NotFound`, or `InvalidState` while allocations hold it.
    pub fn remove_resource(&self, id: &str) -> Result<()> {
        let mut st = self.lock();
        Self::tidy(&mut st, Instant::now());
        let i = st
            .slots
            .iter()
            .position(|s| s.resource.id == id)
            .ok_or_else(|| OrchestrationError::not_found(EntityKind::Resource, id))?;
        if st
            .allocations
            .values()
            .any(|h| h.parts.iter().any(|(s, _)| *s == i))
        {
            return Err(OrchestrationError::InvalidState {
                message: format!("resource `{id}` is allocated; release its allocations first"),
            });
        }
        st.slots.remove(i);
        // Allocation records refer to slots by index: shift the ones after `i`.
        for h in st.allocations.values_mut() {
            for (s, _) in &mut h.parts {
                if *s > i {
                    *s -= 1;
                }
            }
        }
        // A waiter that only this resource could serve now fails at once.
        Self::serve(&mut st);
        drop(st);
        self.changed.notify_waiters();
        Ok(())
    }

    /// Sets a resource's status (`maintenance`, `unavailable`, ...): only an
    /// `available` resource is allocated; existing allocations are kept.
    ///
    /// # Errors
    /// `NotFound` for an unknown resource.
    pub fn set_resource_status(&self, id: &str, status: ResourceStatus) -> Result<()> {
        let mut st = self.lock();
        let slot = st
            .slots
            .iter_mut()
            .find(|s| s.resource.id == id)
            .ok_or_else(|| OrchestrationError::not_found(EntityKind::Resource, id))?;
        slot.resource.status = status;
        slot.resource.updated_at = Utc::now();
        Self::serve(&mut st);
        drop(st);
        self.changed.notify_waiters();
        Ok(())
    }
}
