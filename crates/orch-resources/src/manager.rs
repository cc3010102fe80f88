//! The `ResourceManager`: resources, allocations, waiting queue, usage, health, the resources file.

use chrono::{DateTime, Utc};
use orch_model::resources::MAX_RESOURCE_AMOUNT;
use orch_model::{
    AllocationId, EntityKind, OrchestrationError, Resource, ResourceRequest, ResourceStatus,
    ResourceType, Result,
};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// What an allocation takes: per slot index, micro-units per unit.
type Parts = Vec<(usize, BTreeMap<String, u64>)>;

/// Micro-units per unit: amounts are integers internally.
const SCALE: f64 = 1_000_000.0;

/// Nanoseconds in a minute: rate-limited capacities are per minute.
const NANOS_PER_MINUTE: u128 = 60_000_000_000;

/// How often a waiting request looks again without being woken (rate-limited
/// budgets refill and allocations expire with time, not with a release).
const RECHECK: Duration = Duration::from_millis(100);

fn to_units(v: f64) -> Option<u64> {
    (v.is_finite() && (0.0..=MAX_RESOURCE_AMOUNT).contains(&v)).then(|| (v * SCALE).round() as u64)
}

fn from_units(u: u64) -> f64 {
    u as f64 / SCALE
}

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

#[derive(Debug)]
struct Slot {
    resource: Resource,
    capacity: BTreeMap<String, u64>,
    used: BTreeMap<String, u64>,
    /// `limits.max_concurrent_users`: how many users may hold it at once.
    max_users: Option<usize>,
    /// Rate-limited resources refill continuously; this is when `used` was last decayed.
    refilled: Instant,
    /// Per unit, what the last refills earned below one micro-unit, in
    /// micro-units x nanoseconds per minute (so frequent refills lose nothing).
    carry: BTreeMap<String, u128>,
}

impl Slot {
    fn rate_limited(&self) -> bool {
        self.resource.resource_type == ResourceType::ExternalApi
    }

    /// Token bucket: used amounts of a rate-limited resource decay at capacity per minute.
    fn refill(&mut self, now: Instant) {
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
    fn admits(&self, user: &str) -> bool {
        self.max_users.is_none_or(|n| {
            self.resource.current_users.len() < n
                || self.resource.current_users.iter().any(|u| u == user)
        })
    }

    fn fits(&self, want: &BTreeMap<String, u64>, user: &str) -> bool {
        self.resource.status == ResourceStatus::Available
            && self.admits(user)
            && want.iter().all(|(k, w)| *w <= self.free(k))
    }

    fn free(&self, unit: &str) -> u64 {
        let cap = self.capacity.get(unit).copied().unwrap_or(0);
        cap.saturating_sub(self.used.get(unit).copied().unwrap_or(0))
    }

    /// Why a request that could fit some day does not fit now.
    fn why_not(&self, want: &BTreeMap<String, u64>, user: &str) -> String {
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

    fn could_ever_fit(&self, want: &BTreeMap<String, u64>) -> bool {
        self.max_users != Some(0)
            && want
                .iter()
                .all(|(k, w)| self.capacity.get(k).is_some_and(|cap| w <= cap))
    }

    fn utilization(&self) -> f64 {
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

    fn sync_record(&mut self) {
        self.resource.allocated = self
            .used
            .iter()
            .map(|(k, v)| (k.clone(), from_units(*v)))
            .collect();
    }
}

/// A granted allocation with what it took and when it lapses.
#[derive(Debug)]
struct Held {
    alloc: Allocation,
    parts: Parts,
    expires: Option<Instant>,
}

/// How a request begins: granted at once, or in the line with its ticket.
enum Start {
    Granted(Allocation),
    Queued(u64),
}

/// A request waiting in the queue for capacity.
#[derive(Debug)]
struct Waiter {
    ticket: u64,
    user: String,
    req: ResourceRequest,
    expires_after: Option<Duration>,
}

#[derive(Debug, Default)]
struct State {
    slots: Vec<Slot>,
    allocations: BTreeMap<AllocationId, Held>,
    /// Requests waiting for capacity, first come first served. Only requests
    /// that wait are here: one that is granted or refused at once never is.
    queue: VecDeque<Waiter>,
    /// Outcomes for waiters that were served while they slept, by ticket.
    served: HashMap<u64, Result<Allocation>>,
    next_ticket: u64,
}

/// Capacities, allocations and a first-come-first-served waiting queue.
#[derive(Debug, Default)]
pub struct ResourceManager {
    state: Mutex<State>,
    changed: Notify,
}

/// Takes a waiting request out of the queue when its future ends for any
/// reason (granted, timed out, or dropped while waiting): a request that
/// nobody waits for any more must not block those behind it, and an
/// allocation granted to it that nobody collected is given back.
struct TicketGuard<'a> {
    rm: &'a ResourceManager,
    ticket: u64,
}

impl Drop for TicketGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.rm.lock();
        st.queue.retain(|w| w.ticket != self.ticket);
        if let Some(Ok(a)) = st.served.remove(&self.ticket) {
            ResourceManager::release(&mut st, &a.id, Instant::now());
        }
        ResourceManager::serve(&mut st);
        drop(st);
        self.rm.changed.notify_waiters();
    }
}

fn unavailable(msg: String) -> OrchestrationError {
    OrchestrationError::ResourceAllocation { message: msg }
}

fn meminfo_gb() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: f64 = text
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0 / 1024.0)
}

fn free_disk_gb(path: &Path) -> Option<f64> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    Some(st.blocks_available() as f64 * st.fragment_size() as f64 / 1e9)
}

fn gpu_count() -> Option<f64> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let n = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    (n > 0).then_some(n as f64)
}

/// The machine's resources: cores, memory, free disk (of `disk_path`), GPUs
/// when `nvidia-smi` reports some, a 1000 Mbit/s network budget and the
/// seed's rate-limited `openai_api` (60 requests and 10,000 tokens a minute).
pub fn detect_resources(disk_path: &Path) -> Vec<Resource> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get() as f64)
        .unwrap_or(1.0);
    let mut out = vec![
        ResourceManager::resource("system_cpu", ResourceType::Cpu, &[("cores", cores)]),
        ResourceManager::resource(
            "system_memory",
            ResourceType::Memory,
            &[("gb", meminfo_gb().unwrap_or(1.0))],
        ),
        ResourceManager::resource(
            "system_disk",
            ResourceType::Disk,
            &[("gb", free_disk_gb(disk_path).unwrap_or(0.0))],
        ),
        ResourceManager::resource("system_network", ResourceType::Network, &[("mbps", 1000.0)]),
        ResourceManager::resource(
            "openai_api",
            ResourceType::ExternalApi,
            &[
                ("requests_per_minute", 60.0),
                ("tokens_per_minute", 10_000.0),
            ],
        ),
    ];
    if let Some(n) = gpu_count() {
        out.push(ResourceManager::resource(
            "system_gpu",
            ResourceType::Gpu,
            &[("count", n)],
        ));
    }
    out
}

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

    /// Saves the resources in the seed's format, atomically (temporary file, then rename).
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
        let io = |e: std::io::Error| OrchestrationError::Io {
            message: format!("cannot write {}: {e}", path.display()),
        };
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated
        // (every update is computed first, then applied), so recover it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    /// How many requests are waiting for capacity now.
    pub fn waiting(&self) -> usize {
        self.lock().queue.len()
    }

    /// Releases expired allocations and serves waiters; returns whether
    /// anything changed (then waiters must be woken).
    fn tidy(st: &mut State, now: Instant) -> bool {
        let released = Self::release_expired_in(st, now);
        Self::serve(st) || released > 0
    }

    /// Releases the allocations whose time is up at `now` (without serving
    /// waiters); returns how many.
    fn release_expired_in(st: &mut State, now: Instant) -> usize {
        let expired: Vec<AllocationId> = st
            .allocations
            .iter()
            .filter(|(_, h)| h.expires.is_some_and(|e| e <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            Self::release(st, id, now);
        }
        expired.len()
    }

    /// Runs `f` on the state after releasing expired allocations, and wakes
    /// waiters when that changed anything.
    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut st = self.lock();
        let changed = Self::tidy(&mut st, Instant::now());
        let out = f(&mut st);
        drop(st);
        if changed {
            self.changed.notify_waiters();
        }
        out
    }

    fn snapshot(slot: &mut Slot, now: Instant) -> Resource {
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

    /// Plans a request: which resource serves each requested type. The
    /// outer error is for requests that can never be granted; the inner one
    /// says why a possible request does not fit now.
    fn plan(
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

    fn grant(
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

    /// Gives one allocation back; returns whether it existed.
    fn release(st: &mut State, id: &AllocationId, now: Instant) -> bool {
        let Some(held) = st.allocations.remove(id) else {
            return false;
        };
        for (i, want) in &held.parts {
            let Some(slot) = st.slots.get_mut(*i) else {
                continue;
            };
            slot.refill(now);
            // Rate-limited budgets come back with time, not on release.
            if !slot.rate_limited() {
                for (k, w) in want {
                    if let Some(u) = slot.used.get_mut(k) {
                        *u = u.saturating_sub(*w);
                    }
                }
            }
            slot.sync_record();
        }
        // A user stays a current user of a resource while any allocation of theirs holds it.
        let user = held.alloc.user_id;
        for (i, _) in &held.parts {
            let still = st
                .allocations
                .values()
                .any(|h| h.alloc.user_id == user && h.parts.iter().any(|(s, _)| s == i));
            if !still {
                if let Some(slot) = st.slots.get_mut(*i) {
                    slot.resource.current_users.retain(|u| *u != user);
                }
            }
        }
        true
    }

    /// Grants waiting requests in arrival order while the first one fits
    /// (a request never passes one that came before it). The outcome waits
    /// in `served` for its waiter. Returns whether any waiter was served.
    fn serve(st: &mut State) -> bool {
        let mut any = false;
        while let Some(w) = st.queue.pop_front() {
            let outcome = match Self::plan(st, &w.req, &w.user) {
                Err(e) => Err(e),
                Ok(Ok(parts)) => Self::grant(st, &w.user, parts, w.expires_after),
                Ok(Err(_)) => {
                    st.queue.push_front(w);
                    break;
                }
            };
            st.served.insert(w.ticket, outcome);
            any = true;
        }
        any
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

    /// Allocates a whole request or nothing, waiting (`opts.wait`) and
    /// expiring (`opts.expires_after`) as asked.
    ///
    /// A request is granted at once when it fits and nobody waits ahead of
    /// it. Otherwise, without `wait`, it is refused, saying why; with `wait`
    /// it joins the queue, is granted as soon as it is first in line and
    /// fits, and fails when `wait` passes. A waiting request whose future is
    /// dropped leaves the queue (and gives back what it was granted but
    /// never collected).
    ///
    /// # Errors
    /// As [`ResourceManager::allocate_resources`]; `InvalidParameters` for a
    /// zero `expires_after`.
    pub async fn allocate_resources_with(
        &self,
        user_id: &str,
        req: &ResourceRequest,
        opts: AllocateOptions,
    ) -> Result<Allocation> {
        if opts.expires_after == Some(Duration::ZERO) {
            return Err(OrchestrationError::invalid_parameters(
                "expires_after must be longer than 0 (leave it out for an allocation that never expires)",
            ));
        }
        let start = self.with_state(|st| -> Result<Start> {
            let plan = Self::plan(st, req, user_id)?;
            if st.queue.is_empty() {
                match plan {
                    Ok(parts) => {
                        return Self::grant(st, user_id, parts, opts.expires_after)
                            .map(Start::Granted);
                    }
                    Err(why) if opts.wait.is_none() => {
                        return Err(unavailable(format!(
                            "not enough free capacity for `{user_id}` now (no timeout given): {why}"
                        )));
                    }
                    Err(_) => {}
                }
            } else if opts.wait.is_none() {
                let n = st.queue.len();
                return Err(unavailable(format!(
                    "`{user_id}` was not granted now: {n} earlier request{} {} waiting for capacity and {} served first (give a timeout to wait in line)",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "is" } else { "are" },
                    if n == 1 { "is" } else { "are" },
                )));
            }
            let t = st.next_ticket;
            st.next_ticket += 1;
            st.queue.push_back(Waiter {
                ticket: t,
                user: user_id.to_owned(),
                req: req.clone(),
                expires_after: opts.expires_after,
            });
            Ok(Start::Queued(t))
        })?;
        let ticket = match start {
            Start::Granted(a) => return Ok(a),
            Start::Queued(t) => t,
        };
        let guard = TicketGuard { rm: self, ticket };
        let now = tokio::time::Instant::now();
        let wait = opts.wait.unwrap_or_default();
        // A wait too long to add to a clock is as good as forever: a year.
        let deadline = now
            .checked_add(wait)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600));
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(outcome) = self.with_state(|st| st.served.remove(&ticket)) {
                drop(guard);
                return outcome;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until((now + RECHECK).min(deadline)) => {}
            }
        }
        // The guard takes the request out of the line, so that those behind
        // it are served; an outcome that arrived at the last moment is kept.
        let last = {
            let mut st = self.lock();
            st.queue.retain(|w| w.ticket != ticket);
            st.served.remove(&ticket)
        };
        drop(guard);
        match last {
            Some(outcome) => outcome,
            None => Err(unavailable(format!(
                "not enough free capacity for `{user_id}` within {}",
                orch_model::duration::format_duration(opts.wait.unwrap_or_default())
            ))),
        }
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

    /// Releases allocations of `user_id`: the given ones, or all of the
    /// user's (seed: `deallocate_resources`). Returns whether anything was released.
    pub fn deallocate_resources(
        &self,
        user_id: &str,
        allocation_ids: Option<&[AllocationId]>,
    ) -> bool {
        let mut st = self.lock();
        let now = Instant::now();
        // Expired allocations are released first, so that they do not count here.
        let mut changed = Self::tidy(&mut st, now);
        let ids: Vec<AllocationId> = st
            .allocations
            .iter()
            .filter(|(id, h)| {
                h.alloc.user_id == user_id && allocation_ids.is_none_or(|ids| ids.contains(id))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            Self::release(&mut st, id, now);
        }
        if !ids.is_empty() {
            Self::serve(&mut st);
            changed = true;
        }
        drop(st);
        if changed {
            self.changed.notify_waiters();
        }
        !ids.is_empty()
    }

    /// Releases every allocation whose `expires_at` has passed and serves
    /// the waiters that now fit; returns how many were released (seed: the
    /// cleanup thread's work, `cleanup_expired_allocations`). Every other
    /// call to the manager does this first, too.
    pub fn release_expired(&self) -> usize {
        let mut st = self.lock();
        let released = Self::release_expired_in(&mut st, Instant::now());
        let served = Self::serve(&mut st);
        drop(st);
        if served || released > 0 {
            self.changed.notify_waiters();
        }
        released
    }

    /// Calls [`ResourceManager::release_expired`] every `every` on the
    /// current tokio runtime, until the manager is dropped (the seed's
    /// cleanup thread, at the engine's `cleanup_interval`). `None` outside a
    /// runtime.
    pub fn spawn_cleanup(
        self: &std::sync::Arc<Self>,
        every: Duration,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let weak = std::sync::Arc::downgrade(self);
        let every = every.max(Duration::from_millis(1));
        Some(handle.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(rm) = weak.upgrade() else { break };
                rm.release_expired();
            }
        }))
    }

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

#[cfg(test)]
mod tests {
    use super::*;

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
