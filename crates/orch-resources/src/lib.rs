//! `orch-resources`: the `ResourceManager` (layer L1 of the workspace).
//!
//! This crate will hold capacities detected from the machine, all-or-nothing
//! allocation of resource requests, fair waiting with a timeout, usage and
//! health reports (SPEC §3). It is delivered by the scheduler issue; today it
//! contains no API, so nothing here can be mistaken for a working manager.
//! Resource *requests* and their validation already live in
//! [`orch_model::resources`](../orch_model/resources/index.html).
