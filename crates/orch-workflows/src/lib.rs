//! `orch-workflows`: the `WorkflowManager` (layer L3 of the workspace).
//!
//! This crate will load and save definitions in `workflows_dir`, execute them
//! through `orch-tasks`, run sub-workflows and report progress (SPEC §3). It
//! has no API yet. Parsing, validation, execution levels and Mermaid/DOT
//! export of definitions already live in `orch_model::definition`.
