//! One resource as the manager holds it: capacity and use in micro-units, the users it admits, and the token bucket of a rate-limited (`external_api`) resource.

use crate::from_units;
use orch_model::{Resource, ResourceStatus, ResourceType};
use std::collections::BTreeMap;
use std::time::Instant;

/// Nanoseconds in a minute: rate-limited capacities are per minute.
const NANOS_PER_MINUTE: u128 = 60_000_000_000;

#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) resource: Resource,
    pub(crate) capacity: BTreeMap<String, u64>,
    pub(crate) used: BTreeMap<String, u64>,
    /// `limits.max_concurrent_users`: how many users may hold it at once.
    pub(crate) max_users: Option<usize>,
    /// Rate-limited resources refill continuously; this is when `used` was last decayed.
    pub(crate) refilled: Instant,
    /// Per unit, what the last refills earned below one micro-unit, in
    /// micro-units x nanoseconds per minute (so frequent refills lose nothing).
    pub(crate) carry: BTreeMap<String, u128>,
}

impl Slot {
    pub(crate) fn rate_limited(&self) -> bool {
        self.resource.resource_type == ResourceType::ExternalApi
    }

    /// Token bucket: used amounts of a rate-limited resource decay at capacity per minute.
    pub(crate) fn refill(&mut self, now: Instant) {
        if !self.rate_limited() {
            return;
        }
        let nanos = now.saturating_duration_since(self.refilled).as_nanos();
        self.refilled = now;
        for (k, used) in &mut self.used {
            let cap = u128::from(self.capacity.get(k).copied().unwrap_or(0));
            let carry = self.carry.entry(k.clone()).or_insert(0);
            let earned = cap.saturating_mul(nanos).saturating_add(*carry);
            let back = u64::try_from(earned / NANOS_PER_MINUTE).unwrap_or(u64::MAX);
            *carry = earned % NANOS_PER_MINUTE;
            *used = used.saturating_sub(back);
            if *used == 0 {
                // A full bucket earns nothing more.
                *carry = 0;
            }
        }
    }

    /// Whether `user` may hold this resource besides its current users.
    pub(crate) fn admits(&self, user: &str) -> bool {
        self.max_users.is_none_or(|n| {
            self.resource.current_users.len() < n
                || self.resource.current_users.iter().any(|u| u == user)
        })
    }

    pub(crate) fn fits(&self, want: &BTreeMap<String, u64>, user: &str) -> bool {
        self.resource.status == ResourceStatus::Available
            && self.admits(user)
            && want.iter().all(|(k, w)| *w <= self.free(k))
    }

    pub(crate) fn free(&self, unit: &str) -> u64 {
        let cap = self.capacity.get(unit).copied().unwrap_or(0);
        cap.saturating_sub(self.used.get(unit).copied().unwrap_or(0))
    }

    /// Why a request that could fit some day does not fit now.
    pub(crate) fn why_not(&self, want: &BTreeMap<String, u64>, user: &str) -> String {
        let id = &self.resource.id;
        if self.resource.status != ResourceStatus::Available {
            return format!("`{id}` is {}", self.resource.status.as_str());
        }
        if !self.admits(user) {
            return format!(
                "`{id}` already has its {} concurrent users (limits.max_concurrent_users)",
                self.max_users.unwrap_or(0)
            );
        }
        want.iter()
            .filter(|(k, w)| **w > self.free(k))
            .map(|(k, _)| {
                format!(
                    "`{id}` has {} of {} {k} free",
                    from_units(self.free(k)),
                    from_units(self.capacity.get(k).copied().unwrap_or(0))
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(crate) fn could_ever_fit(&self, want: &BTreeMap<String, u64>) -> bool {
        self.max_users != Some(0)
            && want
                .iter()
                .all(|(k, w)| self.capacity.get(k).is_some_and(|cap| w <= cap))
    }

    pub(crate) fn utilization(&self) -> f64 {
        let parts: Vec<f64> = self
            .capacity
            .iter()
            .filter(|(_, c)| **c > 0)
            .map(|(k, c)| self.used.get(k).copied().unwrap_or(0) as f64 / *c as f64)
            .collect();
        if parts.is_empty() {
            0.0
        } else {
            parts.iter().sum::<f64>() / parts.len() as f64
        }
    }

    pub(crate) fn sync_record(&mut self) {
        self.resource.allocated = self
            .used
            .iter()
            .map(|(k, v)| (k.clone(), from_units(*v)))
            .collect();
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::ResourceManager;
    use orch_model::ResourceType;
    use std::time::Duration;

    /// Refills closer together than one micro-unit's worth of time lost it
    /// all (the elapsed time was consumed, the fraction dropped), so a bucket
    /// looked at often enough never refilled.
    #[test]
    fn frequent_refills_lose_nothing() {
        let start = Instant::now();
        let mut slot = Slot {
            resource: ResourceManager::resource(
                "api",
                ResourceType::ExternalApi,
                &[("requests_per_minute", 60.0)],
            ),
            capacity: BTreeMap::from([("requests_per_minute".to_owned(), 60_000_000)]),
            used: BTreeMap::from([("requests_per_minute".to_owned(), 60_000_000)]),
            max_users: None,
            refilled: start,
            carry: BTreeMap::new(),
        };
        // 60 per minute is one micro-unit per microsecond: 10,000 refills
        // half a microsecond apart (5 ms) give back 5,000 micro-units.
        for i in 1..=10_000u64 {
            slot.refill(start + Duration::from_nanos(500 * i));
        }
        assert_eq!(slot.used["requests_per_minute"], 60_000_000 - 5_000);
    }
}
