//! `orch-tasks`: running DAGs of tasks (layer L2): the scheduler, actions, retries, timeouts, cancellation.
//!
//! [`run_workflow`] runs a validated workflow with bounded, priority-ordered
//! parallelism: `sequential` runs one step at a time, `parallel` up to
//! `max_parallel`, and `resource_aware` also starts a step only when its
//! resource request fits (through `orch_resources::ResourceManager`). Steps are retried with backoff when their failure is
//! retryable, stopped (with their whole process group) when they time out,
//! and skipped according to their trigger rule and `when` condition.
//! `${...}` references are resolved when a step is released, keeping JSON
//! types. Every state change is an [`Event`].
//!
//! ```
//! use orch_model::{Format, Limits, load_workflow};
//! use orch_tasks::{ActionRegistry, RunOptions, run_workflow};
//!
//! let yaml = r#"
//! name: hello
//! steps:
//!   - { name: greet, module: core, action: set, parameters: { value: { who: world } } }
//!   - { name: shout, module: core, action: set, parameters: { value: "hello ${greet.result.who}" } }
//! "#;
//! let wf = load_workflow(yaml, Format::Yaml, &Limits::default(), None).unwrap();
//! let rt = tokio::runtime::Runtime::new().unwrap();
//! let report = rt.block_on(run_workflow(&wf, &ActionRegistry::with_builtins(), RunOptions::default(), None)).unwrap();
//! assert!(report.succeeded());
//! assert_eq!(report.steps[1].result.as_ref().unwrap().data, "hello world");
//! ```
//!
//! [`TaskOrchestrator`] offers the seed's task API (`create_task`,
//! `start_execution`, `wait_for_completion`, `cancel_task`, ...) on the same
//! attempt logic.
//!
//! Steps with `cache: true` are served from a [`ResultCache`] when their
//! inputs (module, action, resolved parameters, upstream results) hash to a
//! stored key.
//!
//! [`MemoryStore`] implements orch-model's `Store` contract in memory and
//! passes its conformance suite; the scheduler does not persist through a
//! store yet (that arrives with the durable-runs issue).

pub mod action;
mod builtin;
pub mod cache;
pub mod confined;
pub mod event;
pub mod executor;
mod memory_leader;
mod memory_output;
mod memory_store;
pub mod orchestrator;
pub mod output;
pub mod process;
pub mod records;
pub mod release;
pub mod resolve;
pub mod run;
pub mod secrets;
pub mod telemetry;
pub mod upstream;
pub mod worker;

pub use action::{Action, ActionContext, ActionError, ActionRegistry, Immediate};
pub use builtin::{Exec, External, Script, fs};
pub use cache::{CacheKey, DirCache, MemoryCache, ResultCache};
pub use event::{Emitter, Event, EventSink, Fanout};
pub use executor::{Executor, LocalExecutor};
pub use memory_store::MemoryStore;
pub use orchestrator::{ExecutionStats, OrchestratorConfig, TaskOptions, TaskOrchestrator};
pub use records::RecordWriter;
pub use run::{RunOptions, RunReport, StepReport, drive, prepare, run_workflow};
