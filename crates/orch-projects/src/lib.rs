//! `orch-projects`: the `ProjectManager` (layer L4 of the workspace).
//!
//! This crate will create projects from templates safely, and track their
//! milestones and metrics (SPEC §3, §9). It has no API yet; the `Project`
//! data type already lives in `orch_model`.
