//! What a worker declares it can hold at once (`--capacity cpu=4,memory=8GiB`)
//! and the pool its attempts take their share from.
//!
//! A store whose claims fit capacities (`ClaimStore::fits_capacity`) is
//! asked only for what fits what is free now: the worker takes each claim's
//! needs from its pool as the claim arrives. With a store that cannot, the
//! worker keeps its own account: a claimed step whose resource request
//! exceeds the worker's whole capacity is handed back at once (another
//! worker may hold it); one that fits the capacity but not what is free now
//! waits, its lease renewed, until running attempts give enough back. The
//! worker never runs more than it declared.

use orch_model::store::ResourceAmounts;
use orch_model::{ResourceRequest, ResourceType};
use std::collections::BTreeMap;
use std::sync::Mutex;
use tokio::sync::Notify;

/// How much of each kind of resource a worker holds at once; a kind it does
/// not name is not limited.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Capacity {
    /// Amount by kind, in the unit a step's request uses for it: cores for
    /// `cpu`, GB (GiB) for `memory` and `disk`, a count for `gpu`.
    pub limits: BTreeMap<ResourceType, f64>,
}

/// How much of `kind` a request asks for: its amount in the kind's unit
/// (`cpu.cores`, `memory.gb`, ...), else the sum of what it asks of the kind
/// ([`ResourceAmounts::demand`]).
pub fn demand(req: &ResourceRequest, kind: ResourceType) -> f64 {
    ResourceAmounts::demand(req, kind)
}

impl Capacity {
    /// Parses `cpu=4,memory=8GiB,gpu=1`: resource kinds (as in resources
    /// files: cpu, memory, disk, gpu, ...) with amounts; memory and disk
    /// take a unit (`GiB`/`GB`/`G`, `MiB`/`MB`/`M`, `TiB`/`TB`/`T`; none: GB).
    ///
    /// # Errors
    /// A message naming the bad entry and what is expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut limits = BTreeMap::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, amount) = entry.split_once('=').ok_or_else(|| {
                format!("capacity `{entry}`: expected NAME=AMOUNT, e.g. cpu=4,memory=8GiB")
            })?;
            let kind: ResourceType = name.trim().parse().map_err(|_| {
                format!(
                    "capacity `{entry}`: unknown resource `{}`; known: {}",
                    name.trim(),
                    ResourceType::ALL
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            let v = amount_of(amount.trim())
                .ok_or_else(|| format!("capacity `{entry}`: `{}` is not an amount (a number, for memory and disk with an optional unit: 512MiB, 8GiB, 1TB)", amount.trim()))?;
            if limits.insert(kind, v).is_some() {
                return Err(format!("capacity: `{}` is given twice", kind.as_str()));
            }
        }
        Ok(Self { limits })
    }

    /// Whether nothing is limited.
    pub fn is_unlimited(&self) -> bool {
        self.limits.is_empty()
    }

    /// The limited kinds a request asks more of than the whole capacity,
    /// as `kind: asked > capacity` lines; empty when it fits an idle worker.
    pub fn too_small_for(&self, req: &ResourceRequest) -> Vec<String> {
        self.limits
            .iter()
            .filter_map(|(&k, &cap)| {
                let d = demand(req, k);
                (d > cap).then(|| format!("{}: {d} > {cap}", k.as_str()))
            })
            .collect()
    }

    /// The capacity as a map of kind names to amounts (for the worker's record).
    pub fn to_map(&self) -> BTreeMap<String, f64> {
        self.limits
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), *v))
            .collect()
    }
}

/// A number, with a unit for sizes: GB (binary and decimal units are both
/// taken as powers of 1024 of the GiB the resources file uses).
fn amount_of(s: &str) -> Option<f64> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "g" | "gb" | "gib" => 1.0,
        "m" | "mb" | "mib" => 1.0 / 1024.0,
        "t" | "tb" | "tib" => 1024.0,
        _ => return None,
    };
    let v = n * scale;
    (v.is_finite() && v >= 0.0).then_some(v)
}

/// What the worker's running attempts hold of its capacity.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    capacity: Capacity,
    used: Mutex<BTreeMap<ResourceType, f64>>,
    freed: Notify,
}

impl Pool {
    pub(crate) fn new(capacity: Capacity) -> Self {
        Self {
            capacity,
            used: Mutex::new(BTreeMap::new()),
            freed: Notify::new(),
        }
    }

    pub(crate) fn capacity(&self) -> &Capacity {
        &self.capacity
    }

    fn used(&self) -> std::sync::MutexGuard<'_, BTreeMap<ResourceType, f64>> {
        self.used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What is free now, per limited kind (empty: nothing is limited).
    pub(crate) fn free(&self) -> ResourceAmounts {
        let used = self.used();
        ResourceAmounts(
            self.capacity
                .limits
                .iter()
                .map(|(&k, &cap)| (k, (cap - used.get(&k).copied().unwrap_or(0.0)).max(0.0)))
                .collect(),
        )
    }

    /// Takes `needs` if it fits what is free now.
    pub(crate) fn try_take(&self, needs: &ResourceAmounts) -> bool {
        if self.capacity.is_unlimited() {
            return true;
        }
        let mut used = self.used();
        let fits =
            self.capacity.limits.iter().all(|(&k, &cap)| {
                needs.get(k) + used.get(&k).copied().unwrap_or(0.0) <= cap + 1e-9
            });
        if fits {
            for &k in self.capacity.limits.keys() {
                *used.entry(k).or_insert(0.0) += needs.get(k);
            }
        }
        fits
    }

    /// Waits until `needs` fits and takes it (the caller must have checked
    /// that it fits the whole capacity).
    pub(crate) async fn take(&self, needs: &ResourceAmounts) {
        if self.capacity.is_unlimited() {
            return;
        }
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.try_take(needs) {
                return;
            }
            freed.await;
        }
    }

    /// Gives `needs` back.
    pub(crate) fn give(&self, needs: &ResourceAmounts) {
        if self.capacity.is_unlimited() {
            return;
        }
        {
            let mut used = self.used();
            for &k in self.capacity.limits.keys() {
                let u = used.entry(k).or_insert(0.0);
                *u = (*u - needs.get(k)).max(0.0);
            }
        }
        self.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_parse_with_units_and_bad_ones_say_why() {
        let c = Capacity::parse("cpu=4, memory=8GiB,gpu=1,disk=512MiB").expect("parses");
        assert_eq!(c.limits[&ResourceType::Cpu], 4.0);
        assert_eq!(c.limits[&ResourceType::Memory], 8.0);
        assert_eq!(c.limits[&ResourceType::Gpu], 1.0);
        assert_eq!(c.limits[&ResourceType::Disk], 0.5);
        for bad in ["cpu", "cpux=1", "cpu=-1", "memory=8XB", "cpu=1,cpu=2"] {
            let e = Capacity::parse(bad).expect_err(bad);
            assert!(e.starts_with("capacity"), "{bad}: {e}");
        }
        assert!(Capacity::parse("").expect("empty").is_unlimited());
    }

    #[test]
    fn a_request_fits_or_names_what_is_too_small() {
        let c = Capacity::parse("cpu=2,memory=4").expect("parses");
        let small = ResourceRequest::default().with(ResourceType::Cpu, "cores", 2.0);
        let big = ResourceRequest::default()
            .with(ResourceType::Cpu, "cores", 3.0)
            .with(ResourceType::Memory, "gb", 1.0);
        assert!(c.too_small_for(&small).is_empty());
        assert_eq!(c.too_small_for(&big), ["cpu: 3 > 2"]);
        let pool = Pool::new(c);
        let small = ResourceAmounts::of(&small);
        assert!(pool.try_take(&small));
        assert!(!pool.try_take(&small), "the cores are taken");
        assert_eq!(pool.free().get(ResourceType::Cpu), 0.0);
        assert_eq!(pool.free().get(ResourceType::Memory), 4.0);
        pool.give(&small);
        assert!(pool.try_take(&small));
    }
}
