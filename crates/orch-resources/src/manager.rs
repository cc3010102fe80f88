//! The `ResourceManager`: resources, allocations, waiting queue, usage, health, the resources file.

use chrono::{DateTime, Utc};
use orch_model::resources::MAX_RESOURCE_AMOUNT;
use orch_model::{
    AllocationId, EntityKind, OrchestrationError, Resource, ResourceRequest, ResourceStatus,
    ResourceType, Result,
};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// What an allocation takes: per slot index, micro-units per unit.
type Parts = Vec<(usize, BTreeMap<String, u64>)>;

/// Micro-units per unit: amounts are integers internally.
const SCALE: f64 = 1_000_000.0;

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
}

#[derive(Debug)]
struct Slot {
    resource: Resource,
    capacity: BTreeMap<String, u64>,
    used: BTreeMap<String, u64>,
    /// Rate-limited resources refill continuously; this is when `used` was last decayed.
    refilled: Instant,
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
        let secs = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        for (k, used) in &mut self.used {
            let cap = self.capacity.get(k).copied().unwrap_or(0) as f64;
            let back = (cap * secs / 60.0) as u64;
            *used = used.saturating_sub(back);
        }
    }

    fn fits(&self, want: &BTreeMap<String, u64>) -> bool {
        self.resource.status == ResourceStatus::Available
            && want.iter().all(|(k, w)| {
                let cap = self.capacity.get(k).copied().unwrap_or(0);
                let used = self.used.get(k).copied().unwrap_or(0);
                cap.checked_sub(used).is_some_and(|free| *w <= free)
            })
    }

    fn could_ever_fit(&self, want: &BTreeMap<String, u64>) -> bool {
        want.iter()
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

#[derive(Debug, Default)]
struct State {
    slots: Vec<Slot>,
    allocations: BTreeMap<AllocationId, (Allocation, Parts)>,
    queue: VecDeque<u64>,
    next_ticket: u64,
}

/// Capacities, allocations and a first-come-first-served waiting queue.
#[derive(Debug, Default)]
pub struct ResourceManager {
    state: Mutex<State>,
    changed: Notify,
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

    /// Adds a resource.
    ///
    /// # Errors
    /// `AlreadyExists` for a duplicate id; `InvalidParameters` for a capacity
    /// that is negative, NaN or too large.
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
            refilled: Instant::now(),
        });
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
        let i = st
            .slots
            .iter()
            .position(|s| s.resource.id == id)
            .ok_or_else(|| OrchestrationError::not_found(EntityKind::Resource, id))?;
        if st
            .allocations
            .values()
            .any(|(_, parts)| parts.iter().any(|(s, _)| *s == i))
        {
            return Err(OrchestrationError::InvalidState {
                message: format!("resource `{id}` is allocated; release its allocations first"),
            });
        }
        st.slots.remove(i);
        // Allocation records refer to slots by index: shift the ones after `i`.
        for (_, parts) in st.allocations.values_mut() {
            for (s, _) in parts.iter_mut() {
                if *s > i {
                    *s -= 1;
                }
            }
        }
        Ok(())
    }

    /// How many requests are waiting for capacity now.
    pub fn waiting(&self) -> usize {
        self.lock().queue.len()
    }

    /// Every resource with its current allocation.
    pub fn list_resources(&self) -> Vec<Resource> {
        let mut st = self.lock();
        let now = Instant::now();
        st.slots
            .iter_mut()
            .map(|s| {
                s.refill(now);
                s.sync_record();
                s.resource.clone()
            })
            .collect()
    }

    /// Checks a request against the resources: every requested unit must exist
    /// on some resource of its type, and fit its total capacity.
    fn plan(st: &mut State, req: &ResourceRequest) -> Result<Option<Parts>> {
        let now = Instant::now();
        let mut parts = Vec::new();
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
                return Err(unavailable(format!(
                    "the request for {kind} ({}) exceeds the total capacity of every `{kind}` resource",
                    want.iter()
                        .map(|(k, v)| format!("{k}: {}", from_units(*v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let mut best: Option<usize> = None;
            for &i in &candidates {
                st.slots[i].refill(now);
                if st.slots[i].fits(&want) {
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
                None => return Ok(None),
            }
        }
        Ok(Some(parts))
    }

    /// Checks whether a request could ever be granted (every unit exists and
    /// fits the total capacity), without allocating.
    ///
    /// # Errors
    /// As [`ResourceManager::allocate_resources`] for impossible requests.
    pub fn check_request(&self, req: &ResourceRequest) -> Result<()> {
        let mut st = self.lock();
        Self::plan(&mut st, req).map(|_| ())
    }

    fn grant(
        st: &mut State,
        user_id: &str,
        parts: Vec<(usize, BTreeMap<String, u64>)>,
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
        let mut alloc = Allocation {
            id: AllocationId::new(),
            user_id: user_id.to_owned(),
            resources: BTreeMap::new(),
            amounts: BTreeMap::new(),
            allocated_at: Utc::now(),
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
        st.allocations.insert(alloc.id, (alloc.clone(), parts));
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
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let ticket = {
            let mut st = self.lock();
            let t = st.next_ticket;
            st.next_ticket += 1;
            st.queue.push_back(t);
            t
        };
        let result = loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if st.queue.front() == Some(&ticket) {
                    match Self::plan(&mut st, req) {
                        Err(e) => break Err(e),
                        Ok(Some(parts)) => break Self::grant(&mut st, user_id, parts),
                        Ok(None) => {}
                    }
                }
            }
            let Some(deadline) = deadline else {
                break Err(unavailable(format!(
                    "not enough free capacity for `{user_id}` now (no timeout given)"
                )));
            };
            // Rate-limited resources refill with time, not with releases: re-check periodically.
            let recheck = tokio::time::Instant::now() + Duration::from_millis(100);
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(recheck.min(deadline)) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                let mut st = self.lock();
                // One last try at the deadline.
                if st.queue.front() == Some(&ticket) {
                    if let Ok(Some(parts)) = Self::plan(&mut st, req) {
                        break Self::grant(&mut st, user_id, parts);
                    }
                }
                break Err(unavailable(format!(
                    "not enough free capacity for `{user_id}` within {}",
                    orch_model::duration::format_duration(timeout.unwrap_or_default())
                )));
            }
        };
        {
            let mut st = self.lock();
            st.queue.retain(|t| *t != ticket);
        }
        // The next in line (or everyone, for a failure) may proceed now.
        self.changed.notify_waiters();
        result
    }

    /// Allocates now or not at all, without waiting and without passing
    /// requests already waiting in the queue (a scheduler calls this for each
    /// ready task; `Ok(None)` means "does not fit now").
    ///
    /// # Errors
    /// As [`ResourceManager::allocate_resources`] for impossible or malformed requests.
    pub fn try_allocate(&self, user_id: &str, req: &ResourceRequest) -> Result<Option<Allocation>> {
        let mut st = self.lock();
        if !st.queue.is_empty() {
            return Self::plan(&mut st, req).map(|_| None);
        }
        match Self::plan(&mut st, req)? {
            Some(parts) => Self::grant(&mut st, user_id, parts).map(Some),
            None => Ok(None),
        }
    }

    /// Releases allocations of `user_id`: the given ones, or all of the
    /// user's (seed: `deallocate_resources`). Returns whether anything was released.
    pub fn deallocate_resources(
        &self,
        user_id: &str,
        allocation_ids: Option<&[AllocationId]>,
    ) -> bool {
        let mut st = self.lock();
        let ids: Vec<AllocationId> = st
            .allocations
            .iter()
            .filter(|(id, (a, _))| {
                a.user_id == user_id && allocation_ids.is_none_or(|ids| ids.contains(id))
            })
            .map(|(id, _)| *id)
            .collect();
        let now = Instant::now();
        for id in &ids {
            let Some((_, parts)) = st.allocations.remove(id) else {
                continue;
            };
            for (i, want) in parts {
                let Some(slot) = st.slots.get_mut(i) else {
                    continue;
                };
                slot.refill(now);
                // Rate-limited budgets come back with time, not on release.
                if !slot.rate_limited() {
                    for (k, w) in want {
                        if let Some(u) = slot.used.get_mut(&k) {
                            *u = u.saturating_sub(w);
                        }
                    }
                }
                slot.sync_record();
            }
        }
        let still: std::collections::BTreeSet<(usize, String)> = st
            .allocations
            .values()
            .flat_map(|(a, parts)| parts.iter().map(|(i, _)| (*i, a.user_id.clone())))
            .collect();
        for (i, slot) in st.slots.iter_mut().enumerate() {
            slot.resource
                .current_users
                .retain(|u| still.contains(&(i, u.clone())));
        }
        drop(st);
        if !ids.is_empty() {
            self.changed.notify_waiters();
        }
        !ids.is_empty()
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
