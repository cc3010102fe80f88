//! `orch-store-sqlite`: the embedded durable store (SPEC §7).
//!
//! This crate will implement the `Store` contract of `orch-model` on SQLite
//! (WAL, group commit, resume after a crash). It depends on `orch-model`
//! only. It has no API yet.
