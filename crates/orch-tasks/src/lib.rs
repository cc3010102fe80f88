//! `orch-tasks`: the `TaskOrchestrator` scheduler (layer L2 of the workspace).
//!
//! This crate will hold the dependency-counting scheduler, the `Action` trait,
//! the `ActionRegistry` and built-in actions, the process executor, retries,
//! timeouts, cancellation, the result cache and the in-memory store (SPEC §5,
//! §6). It is delivered by the scheduler issue and has no API yet. The task
//! state machine it will drive already lives in `orch_model::TaskStatus`.
