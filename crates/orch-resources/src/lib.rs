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

mod manager;

pub use manager::{AllocateOptions, Allocation, ResourceManager, UserAllocation, detect_resources};
