//! The PostgreSQL store passes the conformance suite, each test on a schema of its own.

mod common;

/// The conformance suite, one test per check.
mod conformance {
    orch_model::store_conformance_tests!(super::common::fresh());
}
