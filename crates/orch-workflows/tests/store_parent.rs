//! Issue 10 item 24: a sub-workflow's run is recorded in the store with its
//! parent (the run whose `workflow.run` step started it), also when one
//! process runs several top-level runs at once.

use orch_model::{RunId, Store, Workflow, WorkflowStep};
use orch_tasks::MemoryStore;
use orch_workflows::WorkflowManager;
use serde_json::{Map, json};
use std::collections::HashMap;
use std::sync::Arc;

#[test]
fn sub_workflow_runs_record_their_parent_in_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let m = WorkflowManager::builder(dir.path().join("workflows"))
        .work_dir(dir.path())
        .store(store.clone())
        .build()
        .expect("manager");
    m.add_workflow(
        &Workflow::new("leaf", "")
            .step(WorkflowStep::new("x", "core", "set").param("value", json!(1))),
    )
    .expect("leaf");
    m.add_workflow(
        &Workflow::new("middle", "")
            .step(WorkflowStep::new("call", "workflow", "run").param("workflow", json!("leaf"))),
    )
    .expect("middle");
    m.add_workflow(
        &Workflow::new("top", "")
            .step(WorkflowStep::new("call", "workflow", "run").param("workflow", json!("middle"))),
    )
    .expect("top");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Two top-level runs at once in one process (one owner): neither is
    // the other's child.
    let (a, b) = rt.block_on(async {
        tokio::join!(
            m.execute_workflow("top", Map::new()),
            m.execute_workflow("top", Map::new())
        )
    });
    let (a, b) = (a.expect("a ran"), b.expect("b ran"));
    assert!(a.succeeded() && b.succeeded(), "{a:?} {b:?}");
    let runs = rt.block_on(store.list_runs()).expect("list");
    assert_eq!(runs.len(), 6, "two of each workflow: {runs:?}");
    let by_id: HashMap<RunId, _> = runs.iter().map(|r| (r.id, r)).collect();
    for top in [a.run_id, b.run_id] {
        assert_eq!(by_id[&top].parent, None, "a top-level run has no parent");
        let middles: Vec<_> = runs.iter().filter(|r| r.parent == Some(top)).collect();
        assert_eq!(middles.len(), 1, "one child of {top}: {runs:?}");
        assert_eq!(middles[0].workflow, "middle");
        let leaves: Vec<_> = runs
            .iter()
            .filter(|r| r.parent == Some(middles[0].id))
            .collect();
        assert_eq!(leaves.len(), 1, "one grandchild of {top}: {runs:?}");
        assert_eq!(leaves[0].workflow, "leaf");
    }
    assert_eq!(
        runs.iter().filter(|r| r.parent.is_none()).count(),
        2,
        "only the two `top` runs are top-level"
    );
}
