//! Allocation: planning a request (which resource serves each type, or why none can), granting it all or nothing, and allocating without waiting.

use crate::{ResourceManager, State, from_units, to_units, unavailable};
use chrono::{DateTime, Utc};
use orch_model::{AllocationId, OrchestrationError, ResourceRequest, Result};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What an allocation takes: per slot index, micro-units per unit.
pub(crate) type Parts = Vec<(usize, BTreeMap<String, u64>)>;

/// A granted request.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    /// Unique id (UUID v7).
    pub id: AllocationId,
    /// Who holds it.
    pub user_id: String,
    /// For each requested type, the resource that serves it (the seed's return value).
    pub resources: BTreeMap<String, String>,
    /// What was taken, per resource id and unit.
    pub amounts: BTreeMap<String, BTreeMap<String, f64>>,
    /// When it was granted.
    pub allocated_at: DateTime<Utc>,
    /// When it lapses and is released without a call to `deallocate_resources`
    /// (see [`AllocateOptions::expires_after`]); `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
}

/// How [`ResourceManager::allocate_resources_with`] allocates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocateOptions {
    /// Wait at most this long for capacity, first come first served;
    /// `None`: granted now or refused.
    pub wait: Option<Duration>,
    /// Release the allocation on its own this long after it is granted (the
    /// seed's `expires_at`): expired allocations are released by the next
    /// call to the manager and by [`ResourceManager::release_expired`], which
    /// [`ResourceManager::spawn_cleanup`] calls periodically. `None`: held
    /// until released.
    pub expires_after: Option<Duration>,
}

/// A granted allocation with what it took and when it lapses.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) alloc: Allocation,
    pub(crate) parts: Parts,
    pub(crate) expires: Option<Instant>,
}

impl ResourceManager {
    /// Plans a request: which resource serves each requested type. The
    /// outer error is for requests that can never be granted; the inner one
    /// says why a possible request does not fit now.
    pub(crate) fn plan(
        st: &mut State,
        req: &ResourceRequest,
        user: &str,
    ) -> Result<std::result::Result<Parts, String>> {
        let now = Instant::now();
        let mut parts = Vec::new();
        let mut why = Vec::new();
        for (kind, units) in &req.0 {
            let mut want = BTreeMap::new();
            for (k, v) in units {
                let u = to_units(*v).ok_or_else(|| {
                    OrchestrationError::invalid_parameters(format!(
                        "{kind}.{k} = {v} is not a valid amount"
                    ))
                })?;
                if u > 0 {
                    want.insert(k.clone(), u);
                }
            }
            if want.is_empty() {
                continue;
            }
            let candidates: Vec<usize> = (0..st.slots.len())
                .filter(|&i| st.slots[i].resource.resource_type == *kind)
                .collect();
            if candidates.is_empty() {
                return Err(OrchestrationError::invalid_parameters(format!(
                    "no resource of type `{kind}` exists; known resources: {}",
                    st.slots
                        .iter()
                        .map(|s| s.resource.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            if let Some(k) = want.keys().find(|k| {
                !candidates
                    .iter()
                    .any(|&i| st.slots[i].capacity.contains_key(*k))
            }) {
                let units: Vec<&str> = candidates
                    .iter()
                    .flat_map(|&i| st.slots[i].capacity.keys().map(String::as_str))
                    .collect();
                return Err(OrchestrationError::invalid_parameters(format!(
                    "resources of type `{kind}` have no unit `{k}`; they have: {}",
                    units.join(", ")
                )));
            }
            if !candidates
                .iter()
                .any(|&i| st.slots[i].could_ever_fit(&want))
            {
                let no_users: Vec<&str> = candidates
                    .iter()
                    .filter(|&&i| st.slots[i].max_users == Some(0))
                    .map(|&i| st.slots[i].resource.id.as_str())
                    .collect();
                return Err(unavailable(if no_users.len() == candidates.len() {
                    format!(
                        "every `{kind}` resource admits no users (limits.max_concurrent_users = 0): {}",
                        no_users.join(", ")
                    )
                } else {
                    format!(
                        "the request for {kind} ({}) exceeds the total capacity of every `{kind}` resource",
                        want.iter()
                            .map(|(k, v)| format!("{k}: {}", from_units(*v)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }));
            }
            let mut best: Option<usize> = None;
            for &i in &candidates {
                st.slots[i].refill(now);
                if st.slots[i].fits(&want, user) {
                    let better = match best {
                        None => true,
                        Some(b) => st.slots[i].utilization() < st.slots[b].utilization(),
                    };
                    if better {
                        best = Some(i);
                    }
                }
            }
            match best {
                Some(i) => parts.push((i, want)),
                None => why.push(format!(
                    "{kind}: {}",
                    candidates
                        .iter()
                        .filter(|&&i| st.slots[i].could_ever_fit(&want))
                        .map(|&i| st.slots[i].why_not(&want, user))
                        .collect::<Vec<_>>()
                        .join("; ")
                )),
            }
        }
        Ok(if why.is_empty() {
            Ok(parts)
        } else {
            Err(why.join("; "))
        })
    }

    /// Checks whether a request could ever be granted (every unit exists and
    /// fits the total capacity), without allocating.
    ///
    /// # Errors
    /// As [`ResourceManager::allocate_resources`] for impossible requests.
    pub fn check_request(&self, req: &ResourceRequest) -> Result<()> {
        let mut st = self.lock();
        Self::plan(&mut st, req, "").map(|_| ())
    }

    pub(crate) fn grant(
        st: &mut State,
        user_id: &str,
        parts: Parts,
        expires_after: Option<Duration>,
    ) -> Result<Allocation> {
        // Compute every new amount first, then apply: all or nothing.
        let mut updates = Vec::with_capacity(parts.len());
        for (i, want) in &parts {
            let slot = &st.slots[*i];
            let mut next = slot.used.clone();
            for (k, w) in want {
                let cur = next.get(k).copied().unwrap_or(0);
                let sum = cur
                    .checked_add(*w)
                    .ok_or_else(|| unavailable("allocation overflow".into()))?;
                next.insert(k.clone(), sum);
            }
            updates.push((*i, next));
        }
        let now = Utc::now();
        let expires_at = match expires_after {
            Some(d) => Some(
                chrono::Duration::from_std(d)
                    .ok()
                    .and_then(|d| now.checked_add_signed(d))
                    .ok_or_else(|| {
                        OrchestrationError::invalid_parameters(format!(
                            "expires_after = {} is too far in the future",
                            orch_model::duration::format_duration(d)
                        ))
                    })?,
            ),
            None => None,
        };
        let mut alloc = Allocation {
            id: AllocationId::new(),
            user_id: user_id.to_owned(),
            resources: BTreeMap::new(),
            amounts: BTreeMap::new(),
            allocated_at: now,
            expires_at,
        };
        for (i, next) in updates {
            let slot = &mut st.slots[i];
            slot.used = next;
            slot.resource.total_allocations += 1;
            if !slot.resource.current_users.iter().any(|u| u == user_id) {
                slot.resource.current_users.push(user_id.to_owned());
            }
            slot.sync_record();
        }
        for (i, want) in &parts {
            let slot = &st.slots[*i];
            alloc.resources.insert(
                slot.resource.resource_type.as_str().to_owned(),
                slot.resource.id.clone(),
            );
            alloc.amounts.insert(
                slot.resource.id.clone(),
                want.iter()
                    .map(|(k, v)| (k.clone(), from_units(*v)))
                    .collect(),
            );
        }
        st.allocations.insert(
            alloc.id,
            Held {
                alloc: alloc.clone(),
                parts,
                expires: expires_after.and_then(|d| Instant::now().checked_add(d)),
            },
        );
        Ok(alloc)
    }

    /// Allocates a whole request or nothing (seed: `allocate_resources`).
    ///
    /// Without a timeout the request is granted now or refused. With one, it
    /// waits in a first-come-first-served queue for capacity and fails when
    /// the timeout passes. A request that can never fit fails at once.
    ///
    /// # Errors
    /// `ResourceAllocation` (`RESOURCE_UNAVAILABLE`) when capacity is not there
    /// in time or never can be; `InvalidParameters` for unknown types or units.
    pub async fn allocate_resources(
        &self,
        user_id: &str,
        req: &ResourceRequest,
        timeout: Option<Duration>,
    ) -> Result<Allocation> {
        self.allocate_resources_with(
            user_id,
            req,
            AllocateOptions {
                wait: timeout,
                expires_after: None,
            },
        )
        .await
    }

    /// Allocates now or not at all, without waiting and without passing
    /// requests already waiting in the queue (a scheduler calls this for each
    /// ready task; `Ok(None)` means "does not fit now").
    ///
    /// # Errors
    /// As [`ResourceManager::allocate_resources`] for impossible or malformed requests.
    pub fn try_allocate(&self, user_id: &str, req: &ResourceRequest) -> Result<Option<Allocation>> {
        self.with_state(|st| {
            let plan = Self::plan(st, req, user_id)?;
            match plan {
                Ok(parts) if st.queue.is_empty() => Self::grant(st, user_id, parts, None).map(Some),
                _ => Ok(None),
            }
        })
    }
}
