//! Helpers shared by this crate's integration tests. Each test file is its
//! own binary and uses only some of them, hence the `dead_code` allowance.
#![allow(dead_code)]

use orch_engine::EngineEvent;
use orch_model::ResourceType;
use orch_resources::ResourceManager;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

pub fn params(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("object")
}

/// Drains the events received so far.
pub fn drain(rx: &mut tokio::sync::broadcast::Receiver<EngineEvent>) -> Vec<EngineEvent> {
    let mut v = Vec::new();
    while let Ok(e) = rx.try_recv() {
        v.push(e);
    }
    v
}

/// Writes `DIR/resources.json` with one resource, `cpu0` of 4 cores, and returns its path.
pub fn four_cores_file(dir: &Path) -> PathBuf {
    let res = dir.join("resources.json");
    ResourceManager::with_resources(vec![ResourceManager::resource(
        "cpu0",
        ResourceType::Cpu,
        &[("cores", 4.0)],
    )])
    .expect("resources")
    .save(&res)
    .expect("saved");
    res
}
