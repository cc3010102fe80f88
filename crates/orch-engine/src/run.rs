//! The one door: [`OrchestrationEngine::run`] starts every run.
//!
//! A [`RunRequest`] names what to run (a definition file, a workflow in
//! memory, a workflow by name, a project's workflow, or an interrupted run
//! to resume) and how; the engine resolves it, checks it, and starts it in
//! a session, so that sessions, metrics, the result cache, the store and
//! status see every run, whoever starts it (the CLI, the seed's
//! `execute_workflow`, a library user). The [`RunHandle`] gives the run's
//! id, its events, cancellation and the final report.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::resume::{Resumed, take_over_for_resume};
use orch_model::{Format, ValidWorkflow, Workflow};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::task::JoinHandle;

/// What a run runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RunTarget {
    /// A definition file (YAML, JSON or TOML, by its extension), read with
    /// the engine's limits.
    File(PathBuf),
    /// A workflow built in memory; it is checked as the loader checks a file.
    Workflow(Box<Workflow>),
    /// A workflow already read and validated.
    Valid(Arc<ValidWorkflow>),
    /// A workflow by name: one of the project that encloses the work
    /// directory (when its owner is the current user), else one of the
    /// engine's workflows directory (which includes the templates' workflows).
    Name(String),
    /// A workflow of a project known to the engine (by the project's name):
    /// it runs in the project's directory with the parameters its config
    /// gives, and counts in the project's metrics.
    Project {
        /// The project.
        project: String,
        /// One of its workflows.
        workflow: String,
    },
    /// An interrupted run of the engine's store (its process ended before
    /// the run did): taken over, its interrupted steps run again, and the
    /// rest of it runs; finished steps keep their outcome.
    Resume(RunId),
    /// A new attempt of a failed or cancelled run of the engine's store: a
    /// new run (linked to it by `RunSettings::retry_of`) of the same
    /// definition and parameters that keeps its completed steps' results
    /// and runs the failed, cancelled and skipped steps, the `from` step when
    /// one is named, and everything downstream of them.
    Retry {
        /// The run to retry.
        run: RunId,
        /// A step to run again even if it completed (with its downstream).
        from: Option<String>,
    },
}

/// What to run and how ([`OrchestrationEngine::run`]).
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// What runs.
    pub target: RunTarget,
    /// Parameter values; they override the defaults (and, for a project's
    /// workflow, the project's config). Ignored when resuming (the run keeps its own).
    pub params: Map<String, Value>,
    /// The execution mode (default: the session's, `parallel`).
    pub mode: Option<ExecutionMode>,
    /// Most steps running at once (default: the session's, which is the
    /// engine's `max_workers`).
    pub max_parallel: Option<usize>,
    /// A limit on the whole run.
    pub run_timeout: Option<Duration>,
    /// How long steps that run after a stop (`finally:`, `run_if: always`,
    /// ...) may still run once the run was cancelled or timed out (default:
    /// the workflow's `cancel_grace`, else 30 s).
    pub cancel_grace: Option<Duration>,
    /// Do not serve `cache: true` steps from the cache (new results are still stored).
    pub no_cache: bool,
    /// Where steps work (default: the engine's work directory; a project's
    /// workflow works in its project; a resumed run where it ran).
    pub work_dir: Option<PathBuf>,
    /// The resources of `resource_aware` mode (default: the session's, else the engine's).
    pub resources: Option<Arc<ResourceManager>>,
    /// The session to run in (default: a session of its own, closed when the
    /// run ends, whose lifetime does not limit the run).
    pub session: Option<SessionId>,
    /// The run's id (default: a new one; a resumed run keeps its own).
    pub run_id: Option<RunId>,
    /// Whether [`RunHandle::events`] gives the run's events (they are kept
    /// until read, so ask only when you read them).
    pub events: bool,
    /// Submit the run for the store's workers (`orch worker`) instead of
    /// running it here: it is recorded and the handle follows it from the
    /// store (its events, its report); dropping the handle leaves the run
    /// to the workers. A store whose capabilities say `distributed_claim`
    /// submits every new run this way.
    pub detach: bool,
}

impl RunRequest {
    /// A request to run `target` with every default.
    pub fn new(target: RunTarget) -> Self {
        Self {
            target,
            params: Map::new(),
            mode: None,
            max_parallel: None,
            run_timeout: None,
            cancel_grace: None,
            no_cache: false,
            work_dir: None,
            resources: None,
            session: None,
            run_id: None,
            events: false,
            detach: false,
        }
    }

    /// With these parameter values.
    #[must_use]
    pub fn params(mut self, params: Map<String, Value>) -> Self {
        self.params = params;
        self
    }

    /// With the run's events on the handle.
    #[must_use]
    pub fn with_events(mut self) -> Self {
        self.events = true;
        self
    }
}

/// What a resumed run had done before it was taken over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeInfo {
    /// Steps that had ended (they keep their outcome).
    pub done: usize,
    /// Steps the run has.
    pub total: usize,
    /// Steps that were running when the run was interrupted (they run again).
    pub interrupted: usize,
    /// Processes the run's dead owner left running, stopped before anything ran.
    pub orphans_stopped: usize,
    /// Sub-workflow runs it had started, cancelled (its steps start new ones).
    pub superseded: Vec<RunId>,
    /// Why the sub-workflow runs could not be cancelled, when they could not.
    pub supersede_error: Option<String>,
    /// For a retry ([`RunTarget::Retry`]): the run it retries; `done` is
    /// then the steps it kept.
    pub retry_of: Option<RunId>,
}

/// A run that has started ([`OrchestrationEngine::run`]).
///
/// Dropping the handle (or the future of [`RunHandle::report`]) before the
/// run ends aborts the run where it is, as dropping any future does; its
/// record in the store then shows it interrupted, and it can be resumed.
#[derive(Debug)]
pub struct RunHandle {
    run_id: RunId,
    session_id: SessionId,
    workflow: Arc<ValidWorkflow>,
    events: Option<UnboundedReceiver<Event>>,
    cancel: CancellationToken,
    task: Option<JoinHandle<Result<RunReport, OrchestrationError>>>,
    resumed: Option<ResumeInfo>,
}

impl RunHandle {
    /// The run's id (the store's, for `orch runs show`).
    pub fn run_id(&self) -> RunId {
        self.run_id
    }

    /// The session it runs in.
    pub fn session_id(&self) -> SessionId {
        self.session_id
    }

    /// The workflow that runs.
    pub fn workflow(&self) -> &Arc<ValidWorkflow> {
        &self.workflow
    }

    /// The run's events, once (when the request asked for them): every
    /// [`Event`] of the run, in the order the scheduler emitted them.
    pub fn events(&mut self) -> Option<UnboundedReceiver<Event>> {
        self.events.take()
    }

    /// Asks the run to stop: running steps are stopped, nothing new starts;
    /// the report then says cancelled.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The token [`RunHandle::cancel`] cancels.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// For a resumed run, what it had done before.
    pub fn resumed(&self) -> Option<&ResumeInfo> {
        self.resumed.as_ref()
    }

    /// Waits for the run to end and gives its report. A step that fails is
    /// part of the report, not an error.
    ///
    /// # Errors
    /// The store's error when the run could not be recorded; problems found
    /// before anything ran (unknown modules, bad parameters).
    pub async fn report(mut self) -> Result<RunReport, OrchestrationError> {
        let Some(task) = self.task.as_mut() else {
            return Err(OrchestrationError::InvalidState {
                message: "the run's report was already taken".into(),
            });
        };
        let r = task.await;
        self.task = None;
        r.unwrap_or_else(|e| {
            Err(OrchestrationError::TaskExecution {
                message: format!("the run's task ended abnormally: {e}"),
            })
        })
    }
}

impl Drop for RunHandle {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// A request resolved: the workflow, where it works, and for which project.
struct Resolved {
    wf: Arc<ValidWorkflow>,
    work_dir: PathBuf,
    params: Map<String, Value>,
    project_path: Option<String>,
    /// A project of the engine's project manager whose metrics count the run.
    project: Option<String>,
    resume: Option<(Resumed, ResumeInfo)>,
    runner: Runner,
}

/// Who runs a resolved request.
enum Runner {
    /// The engine's workflow manager, this workflow.
    Valid,
    /// The engine's workflow manager, its workflow of this name (with the
    /// checks of its `workflow.run` calls).
    Named(String),
    /// The project manager, in the project (which marks it active and counts the run).
    Project { project: String, workflow: String },
}

impl OrchestrationEngine {
    /// Starts a run: the one way every run starts. The request is resolved
    /// and checked here (nothing has run when this returns an error); the
    /// run then goes on as a task of the current tokio runtime, in a
    /// session, recorded in the engine's store, with the engine's actions
    /// and result cache, counted in its metrics and status.
    ///
    /// # Errors
    /// `NotFound` for an unknown workflow, project or run; `Validation` with
    /// every problem of a definition; `InvalidParameters` for a bad
    /// parameter or option; `InvalidState` for a run that cannot be resumed
    /// (it still runs, or ended) or during shutdown; `Io` for a file that
    /// cannot be read; the store's errors.
    pub async fn run(&self, req: RunRequest) -> Result<RunHandle, OrchestrationError> {
        self.check_accepting()?;
        if req.max_parallel == Some(0) {
            return Err(OrchestrationError::invalid_parameters(
                "max_parallel must be at least 1",
            ));
        }
        let mut resolved = self.resolve(&req).await?;
        if resolved.resume.is_none() {
            crate::schedule::default_time(&resolved.wf, &mut resolved.params, Utc::now());
        }
        // What the scheduler would refuse is refused now, before a session
        // or a run record exists.
        orch_tasks::prepare(
            &resolved.wf,
            self.inner.workflows.registry(),
            &resolved.params,
        )?;
        let run_id = match &resolved.resume {
            Some((r, _)) => r.run_id,
            None => req.run_id.unwrap_or_default(),
        };
        let cancel = CancellationToken::new();
        let (tx, rx) = if req.events {
            let (tx, rx) = unbounded_channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        // With no_cache, results are still stored; nothing is served.
        let cache: Option<Arc<dyn orch_tasks::ResultCache>> = match &self.inner.cache {
            Some(c) if req.no_cache => Some(Arc::new(crate::cache::WriteOnly(c.clone()))),
            _ => None,
        };
        let Resolved {
            wf,
            work_dir,
            params,
            project_path,
            project,
            resume,
            runner,
        } = resolved;
        let concurrency = crate::concurrency::key_of(&wf, &params)?;
        if resume.is_none() && (req.detach || self.store().capabilities().distributed_claim) {
            let (sid, task) = self
                .submit(
                    crate::submit::Submission {
                        run_id,
                        wf: wf.clone(),
                        work_dir,
                        params,
                        project_path,
                        project_name: project,
                        mode: req.mode,
                        max_parallel: req.max_parallel,
                        run_timeout: req.run_timeout,
                        no_cache: req.no_cache,
                        key: concurrency,
                    },
                    cancel.clone(),
                    tx,
                )
                .await?;
            return Ok(RunHandle {
                run_id,
                session_id: sid,
                workflow: wf,
                events: rx,
                cancel,
                task: Some(task),
                resumed: None,
            });
        }
        if let Some((r, info)) = resume
            .as_ref()
            .filter(|(_, i)| i.retry_of.is_some() && self.store().capabilities().distributed_claim)
        {
            // A retry on a store whose workers claim the steps: its kept
            // steps are recorded; the workers run the others (once it holds
            // a slot of its concurrency key, if it has one).
            self.hand_to_workers(r.run_id, concurrency, tx.as_ref())
                .await?;
            let (sid, task) = self.follow_submitted(
                run_id,
                wf.clone(),
                req.mode.or(r.settings.mode),
                req.max_parallel.or(r.settings.max_parallel),
                cancel.clone(),
                tx,
            )?;
            return Ok(RunHandle {
                run_id,
                session_id: sid,
                workflow: wf,
                events: rx,
                cancel,
                task: Some(task),
                resumed: Some(info.clone()),
            });
        }
        // A project's own runner counts the run in the project itself.
        let counted_in = project.filter(|_| matches!(runner, Runner::Valid));
        // A resumed run keeps how it ran, unless the request says otherwise.
        let (resume_records, resumed, saved) = match resume {
            Some((r, info)) => (Some(r.tasks), Some(info), r.settings),
            None => (None, None, orch_model::RunSettings::default()),
        };
        let mode = req.mode.or(saved.mode);
        let max_parallel = req.max_parallel.or(saved.max_parallel);
        let run_timeout = req
            .run_timeout
            .or(saved.run_timeout_ms.map(Duration::from_millis));
        let (sid, one_off) = match req.session {
            Some(s) => (s, false),
            None => (
                self.create_session(SessionOptions {
                    mode: mode.unwrap_or(ExecutionMode::Parallel),
                    max_parallel_tasks: max_parallel,
                    ..SessionOptions::default()
                })?,
                true,
            ),
        };
        let ov = RunOverrides {
            one_off: None,
            // A session made for this run does not limit it; a caller's does.
            no_deadline: one_off,
            run_id: Some(run_id),
            mode,
            max_parallel,
            timeout: run_timeout,
            cancel_grace: req.cancel_grace,
            resources: req.resources.clone(),
            cache,
            resume: resume_records,
            work_dir: Some(work_dir),
            cancel: Some(cancel.clone()),
            events: tx,
        };
        let me = self.clone();
        let gate_cancel = cancel.clone();
        // The wait for a concurrency slot is told on the run's events.
        let gate_events = ov.events.clone();
        let run_wf = wf.clone();
        let task = self.spawn(async move {
            let label = run_wf.workflow().name.clone();
            let wm = me.inner.workflows.clone();
            let pm = me.inner.projects.clone();
            // A slot of the workflow's concurrency key first (waiting, or skipping the run).
            let entered = crate::concurrency::enter(
                &me,
                concurrency,
                run_id,
                &run_wf,
                &gate_cancel,
                gate_events.as_ref(),
            )
            .await;
            drop(gate_events);
            let entered = match entered {
                Ok(crate::concurrency::Entered::Skipped(report)) => {
                    if one_off {
                        me.close_session(&sid);
                    }
                    return Ok(report);
                }
                Ok(entered) => entered,
                Err(e) => {
                    if one_off {
                        me.close_session(&sid);
                    }
                    return Err(e);
                }
            };
            let result = me
                .run_in(sid, &label, ov, move |opts| async move {
                    let opts = orch_workflows::ExecuteOptions {
                        params,
                        project_path,
                        ..opts
                    };
                    match runner {
                        Runner::Valid => wm.execute_valid(run_wf, opts).await,
                        Runner::Named(name) => wm.execute(&name, opts).await,
                        Runner::Project { project, workflow } => {
                            pm.execute_project_workflow_with(&project, &workflow, opts)
                                .await
                        }
                    }
                })
                .await
                .map(|(_, report)| report);
            entered.leave().await;
            if one_off {
                me.close_session(&sid);
            }
            if let Some(name) = &counted_in {
                if me.inner.projects.get_project(name).is_some() {
                    // The run's own outcome matters more than a failure to count it.
                    let _ =
                        me.inner
                            .projects
                            .record_workflow_run(name, &label, result.as_ref().ok());
                }
            }
            result
        });
        Ok(RunHandle {
            run_id,
            session_id: sid,
            workflow: wf,
            events: rx,
            cancel,
            task: Some(task),
            resumed,
        })
    }

    /// A workflow by name, as [`RunTarget::Name`] finds it (in the project
    /// enclosing `work_dir` when one is given, else among the engine's).
    ///
    /// # Errors
    /// `NotFound` (its hint lists the workflows there are); `Io` when the
    /// workflows directory cannot be read.
    pub fn find_workflow(
        &self,
        name: &str,
        work_dir: Option<PathBuf>,
    ) -> Result<Arc<ValidWorkflow>, OrchestrationError> {
        let mut req = RunRequest::new(RunTarget::Name(name.to_owned()));
        req.work_dir = work_dir;
        self.resolve_now(&req).map(|r| r.wf)
    }

    /// What a request names, read and checked.
    async fn resolve(&self, req: &RunRequest) -> Result<Resolved, OrchestrationError> {
        let taken = match &req.target {
            RunTarget::Resume(id) => Some(take_over_for_resume(self, *id).await?),
            RunTarget::Retry { run, from } => {
                Some(crate::retry::prepare_retry(self, *run, from.as_deref()).await?)
            }
            _ => None,
        };
        if let Some((resumed, info)) = taken {
            return Ok(Resolved {
                wf: resumed.workflow.clone(),
                work_dir: resumed.work_dir.clone(),
                params: resumed.params.clone(),
                project_path: resumed.project_path.clone(),
                project: None,
                resume: Some((resumed, info)),
                runner: Runner::Valid,
            });
        }
        self.resolve_now(req)
    }

    /// [`Self::resolve`] for every target but a resume (which reads the store).
    fn resolve_now(&self, req: &RunRequest) -> Result<Resolved, OrchestrationError> {
        let default_dir = || {
            req.work_dir
                .clone()
                .unwrap_or_else(|| self.inner.workflows.work_dir().to_path_buf())
        };
        let plain = |wf: Arc<ValidWorkflow>| Resolved {
            wf,
            work_dir: default_dir(),
            params: req.params.clone(),
            project_path: None,
            project: None,
            resume: None,
            runner: Runner::Valid,
        };
        match &req.target {
            RunTarget::Valid(wf) => Ok(plain(wf.clone())),
            RunTarget::Workflow(w) => {
                Ok(plain(Arc::new(self.inner.workflows.check_definition(w)?)))
            }
            RunTarget::File(path) => Ok(plain(Arc::new(self.load_file(path)?))),
            RunTarget::Name(name) => {
                if let Some((root, p)) = req.work_dir.as_deref().and_then(enclosing_project) {
                    if p.workflows.iter().any(|w| w == name) {
                        return self.project_target(root, &p, name, req);
                    }
                }
                let wm = &self.inner.workflows;
                if wm.get_valid(name).is_none() {
                    wm.reload()?;
                }
                match wm.get_valid(name) {
                    Some(wf) => Ok(Resolved {
                        runner: Runner::Named(name.clone()),
                        ..plain(wf)
                    }),
                    None => Err(OrchestrationError::NotFound {
                        kind: EntityKind::Workflow,
                        name: name.clone(),
                        hint: Some(format!(
                            "workflows in {}: {}{}",
                            wm.workflows_dir().display(),
                            wm.list_workflows().join(", "),
                            wm.load_problems()
                                .iter()
                                .map(|p| format!("\n{p}"))
                                .collect::<String>()
                        )),
                    }),
                }
            }
            RunTarget::Project { project, workflow } => {
                let pm = &self.inner.projects;
                if pm.get_project(project).is_none() {
                    pm.reload()?;
                }
                let Some(p) = pm.get_project(project) else {
                    return Err(OrchestrationError::NotFound {
                        kind: EntityKind::Project,
                        name: project.clone(),
                        hint: Some(format!("known projects: {}", pm.list_projects().join(", "))),
                    });
                };
                if p.workflows.iter().any(|w| w == workflow) {
                    // A workflow the project lists runs as the project runs it.
                    if let Some(wf) = pm
                        .workflow_manager(project)
                        .ok()
                        .and_then(|wm| wm.get_valid(workflow))
                    {
                        return Ok(Resolved {
                            wf,
                            work_dir: PathBuf::from(&p.path),
                            params: req.params.clone(),
                            project_path: Some(p.path.clone()),
                            project: Some(p.name.clone()),
                            resume: None,
                            runner: Runner::Project {
                                project: project.clone(),
                                workflow: workflow.clone(),
                            },
                        });
                    }
                }
                let root = PathBuf::from(&p.path);
                self.project_target(root, &p, workflow, req)
            }
            RunTarget::Resume(id) | RunTarget::Retry { run: id, .. } => {
                Err(OrchestrationError::InvalidState {
                    message: format!(
                        "run {id} is resumed or retried through `run`, not resolved by name"
                    ),
                })
            }
        }
    }

    /// Reads a definition file with the engine's limits.
    fn load_file(&self, path: &Path) -> Result<ValidWorkflow, OrchestrationError> {
        let format = Format::from_path(path).ok_or_else(|| {
            OrchestrationError::invalid_parameters(format!(
                "{}: the file's extension does not say its format; use .yaml, .yml, .json or .toml",
                path.display()
            ))
        })?;
        let text = std::fs::read_to_string(path).map_err(|e| OrchestrationError::Io {
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        orch_model::load_workflow(
            &text,
            format,
            self.inner.workflows.limits(),
            Some(&path.display().to_string()),
        )
        .map_err(OrchestrationError::Validation)
    }

    /// A workflow of the project at `root`: every workflow its directory
    /// holds (not only those its `project.json` lists), with the parameters
    /// its config gives (the request's win).
    fn project_target(
        &self,
        root: PathBuf,
        project: &orch_model::Project,
        name: &str,
        req: &RunRequest,
    ) -> Result<Resolved, OrchestrationError> {
        let wm = WorkflowManager::builder(root.join(orch_projects::PROJECT_DIR).join("workflows"))
            .limits(self.inner.workflows.limits().clone())
            .build()?;
        let Some(wf) = wm.get_valid(name) else {
            let names = wm.list_workflows();
            return Err(OrchestrationError::NotFound {
                kind: EntityKind::Workflow,
                name: name.to_owned(),
                hint: Some(format!(
                    "project `{}` has no workflow `{name}`; its workflows: {}{}",
                    project.name,
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    },
                    wm.load_problems()
                        .iter()
                        .map(|p| format!("\n{p}"))
                        .collect::<String>()
                )),
            });
        };
        // The project's config gives the parameters the workflow declares.
        let declared = &wf.workflow().parameters;
        let mut params = Map::new();
        if let Some(Value::Object(cfg)) = project
            .config
            .get("workflows")
            .and_then(|w| w.get(&wf.workflow().name))
        {
            for (k, v) in cfg {
                if declared.contains_key(k) {
                    params.insert(k.clone(), v.clone());
                }
            }
        }
        params.extend(req.params.clone());
        Ok(Resolved {
            wf,
            work_dir: root.clone(),
            params,
            project_path: Some(root.display().to_string()),
            project: Some(project.name.clone()),
            resume: None,
            runner: Runner::Valid,
        })
    }
}

/// The project whose metadata directory encloses `dir`, when the current
/// user owns it (a `.orch/project.json` planted in a shared directory such
/// as `/tmp` must not hand its workflows to whoever runs below it).
pub fn enclosing_project(dir: &Path) -> Option<(PathBuf, orch_model::Project)> {
    enclosing_project_for(dir, crate::config::current_uid())
}

/// [`enclosing_project`] for the user `uid`.
pub fn enclosing_project_for(
    dir: &Path,
    uid: Option<u32>,
) -> Option<(PathBuf, orch_model::Project)> {
    for d in dir.ancestors() {
        for sub in [
            orch_projects::PROJECT_DIR,
            orch_projects::LEGACY_PROJECT_DIR,
        ] {
            let meta = d.join(sub);
            let f = meta.join("project.json");
            if f.is_file()
                && crate::config::owned_by(&meta, uid)
                && crate::config::owned_by(&f, uid)
            {
                let p = std::fs::read_to_string(&f)
                    .ok()
                    .and_then(|t| serde_json::from_str::<orch_model::Project>(&t).ok())?;
                return Some((d.to_path_buf(), p));
            }
        }
    }
    None
}
