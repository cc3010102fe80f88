//! The coordinator's state (flat per-step arrays) and what happens to a step
//! when its dependencies end (release: trigger rule, `when`, `${...}`), when it
//! ends (completion), and when it is skipped or served from the cache.

use super::journal::Journal;
use super::options::StepReport;
use super::preflight::ActionTable;
use super::queue::Hot;
use crate::action::ActionContext;
use crate::cache::{CacheKey, ResultCache, cache_key};
use crate::event::Event;
use crate::executor::Outcome;
use crate::release::{Gate, ReadyQueue, Release, decide};
use crate::resolve::Scope;
use chrono::{DateTime, Utc};
use orch_model::CompactString;
use orch_model::{AllocationId, RunId, TaskResult, TaskStatus, ValidWorkflow};
use orch_resources::ResourceManager;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) struct State<'w> {
    pub(super) wf: &'w ValidWorkflow,
    pub(super) run_id: RunId,
    pub(super) project_path: Option<String>,
    pub(super) params: Map<String, Value>,
    /// Step names to indices, built on the first reference that needs it.
    pub(super) index: std::cell::OnceCell<rustc_hash::FxHashMap<&'w str, u32>>,
    /// The distinct actions of the run, and which one each step runs.
    pub(super) actions: ActionTable,
    /// What releasing and starting a step read of its definition, packed.
    pub(super) hot: Vec<Hot>,
    /// The context immediate actions run with (`Action::immediate`): made
    /// once per run, its step, action and attempt set for each step.
    pub(super) ctx: ActionContext,
    /// Where attempts run (`RunOptions::executor`).
    pub(super) executor: Arc<dyn crate::executor::Executor>,
    pub(super) work_dir: Arc<std::path::Path>,
    pub(super) status: Vec<TaskStatus>,
    pub(super) reports: Vec<StepReport>,
    pub(super) remaining: Vec<u32>,
    pub(super) ready: ReadyQueue,
    /// Resolved parameters of released steps; `None` stands for `{}` (most
    /// steps of large workflows), so a pending step costs 8 bytes here.
    pub(super) resolved: Vec<Option<Box<Value>>>,
    pub(super) allocations: Vec<Option<AllocationId>>,
    pub(super) cache_keys: Vec<Option<CacheKey>>,
    pub(super) work: Vec<u32>,
    /// Where the run is recorded, when it is (`RunOptions::store`).
    pub(super) journal: Option<Journal>,
    /// Where steps' output goes while they run (a store that keeps it).
    pub(super) output: Option<crate::output::OutputWriter>,
    pub(super) epoch: (DateTime<Utc>, Instant),
    pub(super) events: Option<crate::event::Emitter>,
    /// What steps over a list known at run time start their items with.
    pub(super) dynamic: Option<Box<super::fanout::Dynamic>>,
    /// What each step's upstream steps came to, for the rules over all of
    /// them (empty unless one asks).
    pub(super) upstream: crate::upstream::UpstreamMemo,
    /// The run is in its cancel grace (`super::grace`).
    pub(super) grace: bool,
    /// The token of the steps that run after a stop, when the workflow has such steps.
    pub(super) survive: Option<tokio_util::sync::CancellationToken>,
}

impl Scope for State<'_> {
    fn param(&self, name: &str) -> Option<&Value> {
        self.params.get(name)
    }
    fn result(&self, step: &str) -> Option<&Value> {
        self.index().get(step).and_then(|&i| self.data(i))
    }
    fn status(&self, step: &str) -> Option<TaskStatus> {
        self.index().get(step).map(|&i| self.status[i as usize])
    }
    fn run_id(&self) -> String {
        self.run_id.to_string()
    }
    fn project_path(&self) -> Option<String> {
        self.project_path.clone()
    }
}

impl State<'_> {
    /// A step's name, for an event (inline up to 24 bytes: a copy, no allocation).
    pub(super) fn name(&self, i: u32) -> CompactString {
        self.reports[i as usize].name.clone()
    }

    /// Whether step `i` finishes when started, without waiting: a plain
    /// step (no timeout, no retries) of an immediate action.
    pub(super) fn is_inline(&self, i: u32) -> bool {
        self.hot[i as usize].is(Hot::PLAIN)
            && self.actions.immediate[self.actions.of[i as usize] as usize]
    }

    /// A step's name.
    pub(super) fn name_str(&self, i: u32) -> &str {
        &self.wf.workflow().steps[i as usize].name
    }

    pub(super) fn index(&self) -> &rustc_hash::FxHashMap<&str, u32> {
        self.index.get_or_init(|| {
            self.wf
                .workflow()
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| (s.name.as_str(), i as u32))
                .collect()
        })
    }

    /// The result of a step that succeeded (kept once, in its report).
    pub(super) fn data(&self, i: u32) -> Option<&Value> {
        let r = &self.reports[i as usize];
        if r.status != TaskStatus::Completed {
            return None;
        }
        r.result.as_ref().filter(|r| r.success).map(|r| &r.data)
    }

    /// Sends an event that changes nothing durable (a step became ready,
    /// the run started or ended), building it only when someone listens.
    pub(super) fn emit(&self, e: impl FnOnce() -> Event) {
        if let Some(tx) = &self.events {
            tx.send(e());
        }
    }

    /// The one place a step's final state is told: the journal consumes the
    /// event first (with the step's report, which holds the result the event
    /// does not carry), then the run's sink gets it.
    pub(super) fn record(&mut self, e: Event) {
        if let (Some(j), Some(i)) = (&mut self.journal, e.task()) {
            j.observe(&e, &self.reports[i as usize]);
        }
        if let Some(tx) = &self.events {
            tx.send(e);
        }
    }

    pub(super) fn set_status(&mut self, i: u32, next: TaskStatus) {
        let cur = &mut self.status[i as usize];
        // The table decides; a forbidden move would be a scheduler bug, and
        // keeping the old state is the safe reaction. (The check, not
        // `transition`: no error value is built and dropped per move.)
        if cur.can_transition_to(next) {
            *cur = next;
            self.reports[i as usize].status = next;
        }
    }

    /// Looks step `i` up in the cache; on a hit, completes it with the cached
    /// result (marked `cached`) and returns true. On a miss, remembers the key
    /// so that a success is stored.
    pub(super) fn serve_from_cache(&mut self, i: u32, cache: &dyn ResultCache) -> bool {
        let step = &self.wf.workflow().steps[i as usize];
        let empty = Value::Object(Map::new());
        let params = self.resolved[i as usize].as_deref().unwrap_or(&empty);
        let upstream: Vec<&Value> = self
            .wf
            .graph()
            .deps(i)
            .iter()
            .map(|&d| self.data(d).unwrap_or(&Value::Null))
            .collect();
        let spec = step.cache.as_deref();
        let mut key = cache_key(&step.module, &step.action, params, &upstream);
        if let Some(globs) = spec.map(|s| &s.files).filter(|f| !f.is_empty()) {
            // The files as they are when the step is about to run.
            match crate::cache::files_digest(&self.work_dir, globs, self) {
                Ok(files) => key = crate::cache::with_files(key, &files),
                Err(why) => {
                    tracing::warn!(step = %step.name, "the step runs without the cache: {why}");
                    return false;
                }
            }
        }
        let since = spec
            .and_then(|s| s.ttl)
            .and_then(|t| chrono::Duration::from_std(t).ok())
            .map(|t| Utc::now() - t);
        match cache.get(&key, since) {
            Some(data) => {
                let now = Utc::now();
                self.set_status(i, TaskStatus::Completed);
                let r = &mut self.reports[i as usize];
                r.finished_at = Some(now);
                r.note = Some(format!(
                    "cached result {}",
                    key.to_string().get(..12).unwrap_or_default()
                ));
                let result = TaskResult {
                    success: true,
                    data,
                    cached: true,
                    ..TaskResult::default()
                };
                let r = &mut self.reports[i as usize];
                r.result = Some(result);
                self.record(Event::TaskCached {
                    task: i,
                    name: self.name(i),
                });
                true
            }
            None => {
                self.cache_keys[i as usize] = Some(key);
                false
            }
        }
    }

    /// Gives back what step `i` was allocated, if anything.
    pub(super) fn release_resources(
        &mut self,
        i: u32,
        rm: Option<&ResourceManager>,
        run_id: RunId,
    ) {
        if let (Some(rm), Some(id)) = (
            rm,
            self.allocations.get_mut(i as usize).and_then(Option::take),
        ) {
            rm.deallocate_resources(&format!("{run_id}:{}", self.name_str(i)), Some(&[id]));
        }
    }

    /// Records a step's outcome and releases what waited for it.
    pub(super) fn complete(
        &mut self,
        out: Outcome,
        dependents: &orch_model::graph::DepGraph,
        cancelled: bool,
        cache: Option<&dyn ResultCache>,
    ) {
        let st = self;
        if let (Some(cache), Some(key), TaskStatus::Completed) = (
            cache,
            st.cache_keys
                .get_mut(out.task as usize)
                .and_then(Option::take),
            out.status,
        ) {
            cache.put(&key, &out.result.data);
        }
        let i = out.task;
        st.set_status(i, out.status);
        let prior = st.journal.as_ref().map_or(0, |j| j.prior[i as usize]);
        let r = &mut st.reports[i as usize];
        r.attempts = prior + out.attempts;
        r.started_at = out.started_at;
        r.finished_at = Some(out.finished_at);
        let event = match out.status {
            TaskStatus::Completed => Event::TaskSucceeded {
                task: i,
                name: st.name(i),
                attempts: out.attempts,
                duration: Duration::from_secs_f64(out.result.execution_time),
            },
            TaskStatus::Cancelled => Event::TaskCancelled {
                task: i,
                name: st.name(i),
                // It was started (and recorded so), even if it was stopped
                // before its action ran.
                attempts: out.attempts.max(1),
            },
            _ => Event::TaskFailed {
                task: i,
                name: st.name(i),
                attempts: out.attempts.max(1),
                error_type: out.result.error_type.clone().unwrap_or_default(),
                message: out.result.error_message.clone().unwrap_or_default(),
                duration: Duration::try_from_secs_f64(out.result.execution_time)
                    .unwrap_or_default(),
            },
        };
        st.reports[i as usize].result = Some(out.result);
        st.record(event);
        let out_finished = out.finished_at;
        st.done(i, dependents, cancelled, out_finished);
    }

    /// Step `i` is final: release its dependents now, or, when the run is
    /// journaled, once its outcome is committed (see `flush`).
    pub(super) fn done(
        &mut self,
        i: u32,
        dependents: &orch_model::graph::DepGraph,
        cancelled: bool,
        now: DateTime<Utc>,
    ) {
        match &mut self.journal {
            Some(j) => j.deferred.push((i, now, cancelled)),
            None => self.finish(i, dependents, cancelled, now),
        }
    }

    /// A step reached a final state at `now`: release what waited for it
    /// (they became ready at that moment).
    pub(super) fn finish(
        &mut self,
        first: u32,
        dependents: &orch_model::graph::DepGraph,
        cancelled: bool,
        now: DateTime<Utc>,
    ) {
        // The work list is kept between calls: no allocation per finished step.
        let mut work = std::mem::take(&mut self.work);
        work.push(first);
        while let Some(i) = work.pop() {
            for &j in dependents.deps(i) {
                let r = &mut self.remaining[j as usize];
                *r -= 1;
                if *r == 0 && (!cancelled || self.grace) && self.release(j, now) {
                    work.push(j);
                }
            }
        }
        self.work = work;
    }

    /// Decides whether step `j` runs (`crate::release::decide`); returns
    /// true when it ended at once (skipped, or failed to resolve) so its
    /// dependents must be released too.
    pub(super) fn release(&mut self, j: u32, now: DateTime<Utc>) -> bool {
        let hot = self.hot[j as usize];
        if hot.is(Hot::GATHER) {
            return self.gather(j, now);
        }
        if self.grace && !hot.run_if.runs_after_stop() {
            return self.cancel_unstarted(j, now);
        }
        let wf = self.wf;
        let steps = &wf.workflow().steps;
        let step = &steps[j as usize];
        // The flags first: a plain step's definition is not read at all.
        let gate = Gate {
            run_if: hot.run_if,
            upstream: if hot.run_if.over_upstream() {
                let status = &self.status;
                self.upstream.of(j, wf.graph(), &|d| status[d as usize])
            } else {
                crate::upstream::Upstream::ALL_COMPLETED
            },
            when: if hot.is(Hot::WHEN) {
                step.conditions.when.as_deref()
            } else {
                None
            },
            params: hot.is(Hot::PARAMS).then(|| {
                (
                    step.module.as_str(),
                    step.action.as_str(),
                    &*step.parameters,
                )
            }),
        };
        let deps = wf
            .graph()
            .deps(j)
            .iter()
            .map(|&d| (self.status[d as usize], steps[d as usize].name.as_str()));
        // `None` stands for `{}`: a step without parameters builds no map.
        let resolved = match decide(gate, deps, self) {
            Release::Run(params) => params.map(|p| Box::new(Value::Object(p))),
            Release::Skip(reason) => return self.skip(j, reason, now),
            Release::Fail(message) => return self.fail_at_release(j, message, now),
        };
        self.resolved[j as usize] = resolved;
        self.set_status(j, TaskStatus::Ready);
        self.reports[j as usize].ready_at = Some(now);
        self.ready.push(hot.priority, j);
        self.emit(|| Event::TaskReady {
            task: j,
            name: self.name(j),
        });
        false
    }

    pub(super) fn skip(&mut self, j: u32, reason: String, now: DateTime<Utc>) -> bool {
        self.set_status(j, TaskStatus::Skipped);
        let r = &mut self.reports[j as usize];
        r.finished_at = Some(now);
        r.note = Some(reason.clone());
        self.record(Event::TaskSkipped {
            task: j,
            name: self.name(j),
            reason,
        });
        true
    }

    pub(super) fn fail_at_release(&mut self, j: u32, message: String, now: DateTime<Utc>) -> bool {
        self.set_status(j, TaskStatus::Ready);
        self.set_status(j, TaskStatus::Failed);
        let r = &mut self.reports[j as usize];
        r.ready_at = Some(now);
        r.finished_at = Some(now);
        r.result = Some(TaskResult::failed("ReferenceError", message.clone()));
        self.record(Event::TaskFailed {
            task: j,
            name: self.name(j),
            attempts: 0,
            error_type: "ReferenceError".into(),
            message,
            duration: Duration::ZERO,
        });
        true
    }
}
