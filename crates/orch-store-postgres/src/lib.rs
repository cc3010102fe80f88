//! `orch-store-postgres`: the multi-machine store (SPEC §7).
//!
//! This crate will implement the `Store` contract of `orch-model` on
//! PostgreSQL (claims with `FOR UPDATE SKIP LOCKED`, leases, fencing). It
//! depends on `orch-model` only. It has no API yet.
