//! `orch-resources`: the `ResourceManager` (layer L1): capacities, all-or-nothing allocation, fair waiting.
//!
//! Capacities default to the machine's (CPU cores, memory, free disk, GPUs
//! when `nvidia-smi` answers, a network budget, and the seed's rate-limited
//! `openai_api`), and can be loaded from (and saved to) a resources file in
//! the seed's JSON format. A request in the seed's shape
//! (`{"cpu": {"cores": 2}, "memory": {"gb": 4}}`) is granted whole or not at
//! all; with a timeout it waits, first come first served, for capacity.
//! Amounts are kept as integer micro-units with checked arithmetic, so
//! allocating and releasing never drifts.
//!
//! ```
//! use orch_model::{ResourceRequest, ResourceType};
//! use orch_resources::ResourceManager;
//!
//! let rm = ResourceManager::with_resources(vec![ResourceManager::resource("cpu0", ResourceType::Cpu, &[("cores", 4.0)])]).unwrap();
//! let req = ResourceRequest::default().with(ResourceType::Cpu, "cores", 3.0);
//! let rt = tokio::runtime::Runtime::new().unwrap();
//! let a = rt.block_on(rm.allocate_resources("task-1", &req, None)).unwrap();
//! assert!(rt.block_on(rm.allocate_resources("task-2", &req, None)).is_err()); // only 1 core left
//! assert!(rm.deallocate_resources("task-1", Some(&[a.id])));
//! ```

mod allocate;
pub mod atomic;
mod detect;
mod health;
mod persist;
mod registry;
mod release;
mod slot;
mod usage;
mod waiting;

pub use allocate::{AllocateOptions, Allocation};
pub use detect::detect_resources;
pub use health::{ResourceHealth, ResourceHealthEntry, ResourceHealthMap, ResourceUsage};
pub use usage::UserAllocation;

use allocate::Held;
use orch_model::resources::MAX_RESOURCE_AMOUNT;
use orch_model::{AllocationId, OrchestrationError, Result};
use slot::Slot;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;
use tokio::sync::Notify;
use waiting::Waiter;

/// Micro-units per unit: amounts are integers internally.
const SCALE: f64 = 1_000_000.0;

/// An amount in micro-units; `None` when it is negative, not finite or too large.
fn to_units(v: f64) -> Option<u64> {
    (v.is_finite() && (0.0..=MAX_RESOURCE_AMOUNT).contains(&v)).then(|| (v * SCALE).round() as u64)
}

/// Micro-units back to an amount.
fn from_units(u: u64) -> f64 {
    u as f64 / SCALE
}

/// A `ResourceAllocation` error.
fn unavailable(msg: String) -> OrchestrationError {
    OrchestrationError::ResourceAllocation { message: msg }
}

/// Everything behind the manager's lock: the resources, the allocations and the waiting line.
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

impl ResourceManager {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated
        // (every update is computed first, then applied), so recover it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
}
