//! Helpers shared by this crate's integration tests (every test file uses
//! all of them).

use orch_model::{NewRun, NewTask, RunId, TaskPriority};

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A new run `id` of the workflow `w` with one task `a`.
pub fn run(id: RunId) -> NewRun {
    NewRun {
        id,
        workflow: "w".into(),
        definition: r#"{"name":"w"}"#.to_owned(),
        params: serde_json::Map::new(),
        tasks: vec![NewTask {
            name: "a".into(),
            deps: vec![],
            priority: TaskPriority::Normal,
            needs: Default::default(),
            spec: None,
        }],
        parent: None,
        owner: None,
        max_parallel: None,
    }
}
