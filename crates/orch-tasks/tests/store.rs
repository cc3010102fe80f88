//! The in-memory store passes the Store conformance suite of orch-model.

use orch_tasks::MemoryStore;

/// The conformance suite, one test per check.
mod conformance {
    orch_model::store_conformance_tests!(orch_tasks::MemoryStore::new());
}

/// The same checks on a store without the optional concerns (claims,
/// records, the cache, taking over): each of their calls is `Unsupported`.
mod without_optional_concerns {
    orch_model::store_conformance_tests!(bare: orch_tasks::MemoryStore::new());
}

#[test]
fn the_store_trait_is_usable_as_a_shared_object() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<std::sync::Arc<dyn orch_model::Store>>();
    let store: std::sync::Arc<dyn orch_model::Store> = std::sync::Arc::new(MemoryStore::new());
    assert!(!store.capabilities().durable);
}
