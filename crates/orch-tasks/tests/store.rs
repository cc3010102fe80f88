//! The in-memory store passes the Store conformance suite of orch-model.

use orch_tasks::MemoryStore;

#[test]
fn memory_store_passes_the_conformance_suite() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(orch_model::testkit::conformance(MemoryStore::new));
}

#[test]
fn the_store_trait_is_usable_as_a_shared_object() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<std::sync::Arc<dyn orch_model::Store>>();
    let store: std::sync::Arc<dyn orch_model::Store> = std::sync::Arc::new(MemoryStore::new());
    assert!(!store.capabilities().durable);
}
