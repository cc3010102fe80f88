//! `orch-engine`: the `OrchestrationEngine` facade (layer L5 of the workspace).
//!
//! This crate will hold sessions and modes, configuration from files and the
//! environment, events, system status, health checks, and the choice of a
//! store by URL (SPEC §3, §7). It has no API yet.
