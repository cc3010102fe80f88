//! Detecting the machine's capacities: cores, memory, free disk, GPUs, and the seed's default network and API budgets.

use crate::ResourceManager;
use orch_model::{Resource, ResourceType};
use std::path::Path;

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
