//! Sessions: the seed's `create_session` and friends, and running work under a session's rules.

#[allow(clippy::wildcard_imports)]
use super::*;
/// How a session runs its work (seed: `create_session`'s arguments).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionOptions {
    /// Who the session is for.
    pub user_id: String,
    /// `sequential`, `parallel` or `resource_aware`.
    pub mode: ExecutionMode,
    /// Most tasks one workflow runs at once (default: the engine's `max_workers`, 4).
    pub max_parallel_tasks: Option<usize>,
    /// Most workflows the session runs at once (default 2); more wait their turn.
    pub max_parallel_workflows: usize,
    /// Seconds the session lives; work still running then is cancelled (default: the engine's `session_timeout`).
    pub timeout_seconds: Option<u64>,
    /// Resources held for the session's whole life (the seed's shape); in
    /// `resource_aware` mode its tasks share exactly these.
    pub resource_requirements: ResourceRequest,
    /// Free-form metadata.
    pub metadata: Map<String, Value>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            user_id: "system".into(),
            mode: ExecutionMode::Parallel,
            max_parallel_tasks: None,
            max_parallel_workflows: 2,
            timeout_seconds: None,
            resource_requirements: ResourceRequest::default(),
            metadata: Map::new(),
        }
    }
}

/// A session's life-cycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Accepting work.
    Active,
    /// Closed by `close_session` (or after a one-off run).
    Closed,
    /// Its timeout passed.
    Expired,
}

/// A session as `get_session` reports it (and as the store records it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Its id.
    pub session_id: SessionId,
    /// Who it is for.
    pub user_id: String,
    /// Its mode.
    pub mode: ExecutionMode,
    /// Most tasks per workflow.
    pub max_parallel_tasks: usize,
    /// Most workflows at once.
    pub max_parallel_workflows: usize,
    /// Its lifetime in seconds.
    pub timeout_seconds: u64,
    /// What it holds.
    pub resource_requirements: ResourceRequest,
    /// Free-form metadata.
    pub metadata: Map<String, Value>,
    /// Active, closed or expired.
    pub status: SessionStatus,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it ended.
    pub closed_at: Option<DateTime<Utc>>,
    /// Workflows it has run.
    pub workflows_executed: u64,
    /// Workflows running in it now.
    pub running_workflows: usize,
}

pub(crate) struct SessionState {
    pub(crate) info: Session,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) cancel: CancellationToken,
    pub(crate) resources: Option<Arc<ResourceManager>>,
    pub(crate) allocations: Vec<AllocationId>,
    pub(crate) deadline: Instant,
}

impl OrchestrationEngine {
    /// Creates a session (seed: `create_session`). Its resource
    /// requirements are allocated now and held until it closes.
    ///
    /// # Errors
    /// `InvalidParameters` for zero parallelism or a bad request;
    /// `ResourceAllocation` (`RESOURCE_UNAVAILABLE`) when the resources are
    /// not free; `InvalidState` during shutdown.
    pub fn create_session(&self, opts: SessionOptions) -> Result<SessionId, OrchestrationError> {
        self.check_accepting()?;
        self.sweep();
        if opts.max_parallel_workflows == 0 || opts.max_parallel_tasks == Some(0) {
            return Err(OrchestrationError::invalid_parameters(
                "max_parallel_tasks and max_parallel_workflows must be at least 1",
            ));
        }
        if opts.timeout_seconds == Some(0) {
            return Err(OrchestrationError::invalid_parameters(
                "timeout_seconds must be at least 1 (leave it out for the engine's session_timeout)",
            ));
        }
        let id = SessionId::new();
        let user = format!("session:{id}");
        let mut allocations = Vec::new();
        if !opts.resource_requirements.is_empty() {
            match self
                .inner
                .resources
                .try_allocate(&user, &opts.resource_requirements)?
            {
                Some(a) => allocations.push(a.id),
                None => {
                    return Err(OrchestrationError::ResourceAllocation {
                        message: format!(
                            "the session's resource requirements are not free now; in use: {}",
                            self.inner.resources.get_resource_usage(None)
                        ),
                    });
                }
            }
        }
        // In resource_aware mode the session's tasks share exactly what it holds.
        let resources = match opts.mode {
            ExecutionMode::ResourceAware if !opts.resource_requirements.is_empty() => {
                let rs = opts
                    .resource_requirements
                    .0
                    .iter()
                    .map(|(kind, caps)| {
                        let caps: Vec<(&str, f64)> =
                            caps.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                        let kind_name = serde_json::to_value(kind)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default();
                        ResourceManager::resource(&format!("session_{kind_name}"), *kind, &caps)
                    })
                    .collect();
                Some(Arc::new(ResourceManager::with_resources(rs)?))
            }
            ExecutionMode::ResourceAware => Some(self.inner.resources.clone()),
            _ => None,
        };
        let timeout = opts.timeout_seconds.unwrap_or(self.inner.session_timeout);
        let info = Session {
            session_id: id,
            user_id: opts.user_id.clone(),
            mode: opts.mode,
            max_parallel_tasks: opts.max_parallel_tasks.unwrap_or(self.inner.max_workers),
            max_parallel_workflows: opts.max_parallel_workflows,
            timeout_seconds: timeout,
            resource_requirements: opts.resource_requirements,
            metadata: opts.metadata,
            status: SessionStatus::Active,
            created_at: Utc::now(),
            closed_at: None,
            workflows_executed: 0,
            running_workflows: 0,
        };
        lock(&self.inner.sessions).insert(
            id,
            SessionState {
                permits: Arc::new(Semaphore::new(info.max_parallel_workflows)),
                info,
                cancel: self.inner.shutdown.child_token(),
                resources,
                allocations,
                deadline: Instant::now() + Duration::from_secs(timeout),
            },
        );
        self.inner.counters.sessions.fetch_add(1, Ordering::Relaxed);
        self.record_session(&id);
        self.emit(EngineEvent::SessionCreated {
            session_id: id,
            user_id: opts.user_id,
            timestamp: Utc::now(),
        });
        Ok(id)
    }

    /// A session's state.
    pub fn get_session(&self, id: &SessionId) -> Option<Session> {
        self.sweep();
        lock(&self.inner.sessions).get(id).map(|s| s.info.clone())
    }

    /// Every active session and the last `session_history` ended ones
    /// (config; default 1000), oldest first.
    pub fn list_sessions(&self) -> Vec<Session> {
        self.sweep();
        let mut v: Vec<Session> = lock(&self.inner.sessions)
            .values()
            .map(|s| s.info.clone())
            .collect();
        v.sort_by_key(|s| s.created_at);
        v
    }

    /// Closes a session: its running work is cancelled and its resources are
    /// released. Returns false when it was not active.
    pub fn close_session(&self, id: &SessionId) -> bool {
        self.end_session(id, SessionStatus::Closed, "closed")
    }

    pub(crate) fn end_session(&self, id: &SessionId, status: SessionStatus, reason: &str) -> bool {
        let allocations = {
            let mut sessions = lock(&self.inner.sessions);
            let Some(s) = sessions.get_mut(id) else {
                return false;
            };
            if s.info.status != SessionStatus::Active {
                return false;
            }
            s.info.status = status;
            s.info.closed_at = Some(Utc::now());
            s.cancel.cancel();
            s.permits.close();
            std::mem::take(&mut s.allocations)
        };
        self.record_session(id);
        self.forget_ended(*id);
        if !allocations.is_empty() {
            self.inner
                .resources
                .deallocate_resources(&format!("session:{id}"), Some(&allocations));
        }
        self.emit(EngineEvent::SessionClosed {
            session_id: *id,
            reason: reason.to_owned(),
            timestamp: Utc::now(),
        });
        true
    }

    /// Remembers that `id` ended, and forgets the oldest ended sessions
    /// beyond `session_history` (their records stay in the store).
    pub(crate) fn forget_ended(&self, id: SessionId) {
        let mut sessions = lock(&self.inner.sessions);
        let mut ended = lock(&self.inner.ended);
        ended.push_back(id);
        while ended.len() > self.inner.session_history {
            if let Some(old) = ended.pop_front() {
                sessions.remove(&old);
            }
        }
    }

    /// Queues the session's current state for the store.
    pub(crate) fn record_session(&self, id: &SessionId) {
        let Some(info) = lock(&self.inner.sessions).get(id).map(|s| s.info.clone()) else {
            return;
        };
        if let Ok(data) = serde_json::to_value(&info) {
            self.inner.records.put(orch_model::Record {
                kind: orch_model::RecordKind::Session,
                key: id.to_string(),
                data,
                updated_at: Utc::now(),
            });
        }
    }

    /// Every session recorded in the store, by this process and earlier ones
    /// sharing the store, oldest change first (a session still marked active
    /// there belonged to a process that ended without closing it, or is
    /// active in another process). Session records that do not parse are
    /// skipped.
    ///
    /// # Errors
    /// The store's error.
    pub async fn session_history(&self) -> Result<Vec<Session>, OrchestrationError> {
        let store = self.inner.store.clone();
        let inner = self.inner.clone();
        // Everything queued so far is written first (the wait blocks briefly).
        tokio::task::spawn_blocking(move || inner.records.flush())
            .await
            .map_err(|e| OrchestrationError::Io {
                message: format!("waiting for session records: {e}"),
            })?;
        Ok(store
            .records(orch_model::RecordKind::Session)
            .await?
            .into_iter()
            .filter_map(|r| serde_json::from_value(r.data).ok())
            .collect())
    }

    /// Ends every session whose timeout passed and releases every resource
    /// allocation whose expiry passed; returns how many sessions ended.
    /// Runs every `cleanup_interval` while the engine lives.
    pub fn sweep(&self) -> usize {
        self.inner.resources.release_expired();
        let now = Instant::now();
        let expired: Vec<SessionId> = lock(&self.inner.sessions)
            .iter()
            .filter(|(_, s)| s.info.status == SessionStatus::Active && s.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        expired
            .iter()
            .filter(|id| self.end_session(id, SessionStatus::Expired, "expired"))
            .count()
    }

    /// Runs `f` under a session's rules: its mode and parallelism, a slot
    /// among its `max_parallel_workflows`, its remaining time, its resources.
    pub(crate) async fn in_session<F, Fut>(
        &self,
        session: Option<&SessionId>,
        workflow: &str,
        ov: RunOverrides,
        f: F,
    ) -> Result<(SessionId, RunReport), OrchestrationError>
    where
        F: FnOnce(ExecuteOptions) -> Fut,
        Fut: std::future::Future<Output = Result<RunReport, OrchestrationError>>,
    {
        self.check_accepting()?;
        self.sweep();
        let (sid, one_off) = match session {
            Some(id) => (*id, false),
            None => (
                self.create_session(ov.one_off.clone().unwrap_or_default())?,
                true,
            ),
        };
        let result = self.run_in(sid, workflow, ov, f).await;
        if one_off {
            self.close_session(&sid);
        }
        result
    }

    pub(crate) async fn run_in<F, Fut>(
        &self,
        sid: SessionId,
        workflow: &str,
        ov: RunOverrides,
        f: F,
    ) -> Result<(SessionId, RunReport), OrchestrationError>
    where
        F: FnOnce(ExecuteOptions) -> Fut,
        Fut: std::future::Future<Output = Result<RunReport, OrchestrationError>>,
    {
        let (permits, cancel, mode, max_parallel, resources) = {
            let sessions = lock(&self.inner.sessions);
            let s = sessions
                .get(&sid)
                .ok_or_else(|| OrchestrationError::NotFound {
                    kind: EntityKind::Session,
                    name: sid.to_string(),
                    hint: Some("create one with create_session".into()),
                })?;
            if s.info.status != SessionStatus::Active {
                return Err(OrchestrationError::InvalidState {
                    message: format!(
                        "session {sid} is {}; create a new session",
                        if s.info.status == SessionStatus::Expired {
                            "expired"
                        } else {
                            "closed"
                        }
                    ),
                });
            }
            (
                s.permits.clone(),
                s.cancel.clone(),
                s.info.mode,
                s.info.max_parallel_tasks,
                s.resources.clone(),
            )
        };
        // Wait for one of the session's workflow slots (first come, first served).
        let _permit =
            permits
                .acquire_owned()
                .await
                .map_err(|_| OrchestrationError::InvalidState {
                    message: format!("session {sid} ended while the workflow waited for a slot"),
                })?;
        // A shutdown that began while this workflow waited for its slot: it
        // is new work, and is refused like any other.
        self.check_accepting()?;
        let deadline = lock(&self.inner.sessions).get(&sid).map(|s| s.deadline);
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if remaining == Some(Duration::ZERO) && !ov.no_deadline {
            self.sweep();
            return Err(OrchestrationError::InvalidState {
                message: format!("session {sid} expired"),
            });
        }
        let _running = RunningGuard::enter(&self.inner, &self.inner.running);
        if let Some(s) = lock(&self.inner.sessions).get_mut(&sid) {
            s.info.running_workflows += 1;
        }
        let run_id = ov.run_id.unwrap_or_default();
        let started = Instant::now();
        self.emit(EngineEvent::WorkflowStarted {
            session_id: sid,
            workflow: workflow.to_owned(),
            run_id,
            timestamp: Utc::now(),
        });
        // The engine consumes the run's events as they happen (counters,
        // engine events), and hands the run's own on to its handle.
        let sink = Arc::new(EngineSink {
            engine: self.clone(),
            top: run_id,
            out: ov.events,
            metrics: crate::metrics::RunMetrics::new(),
        });
        // The run stops when its session ends or when its handle cancels it.
        let run_cancel = ov.cancel.unwrap_or_default();
        let watch = {
            let (session_cancel, run_cancel) = (cancel.clone(), run_cancel.clone());
            tokio::spawn(async move {
                session_cancel.cancelled().await;
                run_cancel.cancel();
            })
        };
        let timeout = if ov.no_deadline {
            ov.timeout
        } else {
            match (ov.timeout, remaining) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        let opts = ExecuteOptions {
            mode: Some(ov.mode.unwrap_or(mode)),
            max_parallel: Some(ov.max_parallel.unwrap_or(max_parallel)),
            timeout,
            cancel_grace: ov.cancel_grace,
            cancel: Some(run_cancel),
            sink: Some(sink.clone()),
            run_id: Some(run_id),
            resources: ov.resources.or(resources),
            cache: ov.cache,
            resume: ov.resume,
            work_dir: ov.work_dir,
            ..ExecuteOptions::default()
        };
        let result = f(opts).await;
        watch.abort();
        drop(sink);
        let elapsed = started.elapsed();
        let success = result.as_ref().is_ok_and(RunReport::succeeded);
        let c = &self.inner.counters;
        c.workflows.fetch_add(1, Ordering::Relaxed);
        if success { &c.succeeded } else { &c.failed }.fetch_add(1, Ordering::Relaxed);
        c.workflow_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if let Some(s) = lock(&self.inner.sessions).get_mut(&sid) {
            s.info.running_workflows = s.info.running_workflows.saturating_sub(1);
            s.info.workflows_executed += 1;
        }
        self.record_session(&sid);
        self.emit(EngineEvent::WorkflowCompleted {
            session_id: sid,
            workflow: workflow.to_owned(),
            run_id,
            success,
            execution_time: elapsed.as_secs_f64(),
            timestamp: Utc::now(),
        });
        let report = result?;
        Ok((sid, report))
    }
}

/// How one run differs from its session's rules (all optional; the seed's
/// calls give none).
#[derive(Debug, Default)]
pub(crate) struct RunOverrides {
    /// The session created for a run that names none (default options when absent).
    pub(crate) one_off: Option<SessionOptions>,
    /// The session's remaining time does not limit the run.
    pub(crate) no_deadline: bool,
    pub(crate) run_id: Option<RunId>,
    pub(crate) mode: Option<ExecutionMode>,
    pub(crate) max_parallel: Option<usize>,
    pub(crate) timeout: Option<Duration>,
    /// The run's cancel grace (`RunRequest::cancel_grace`).
    pub(crate) cancel_grace: Option<Duration>,
    pub(crate) resources: Option<Arc<ResourceManager>>,
    pub(crate) cache: Option<Arc<dyn orch_tasks::ResultCache>>,
    pub(crate) resume: Option<Vec<orch_model::store::TaskRecord>>,
    pub(crate) work_dir: Option<PathBuf>,
    pub(crate) cancel: Option<CancellationToken>,
    /// Receives the run's events.
    pub(crate) events: Option<tokio::sync::mpsc::UnboundedSender<Event>>,
}

/// The engine's consumer of a run's events (and of the sub-workflow runs
/// it starts): its counters, metrics and engine events, and the top-level
/// run's events on to the run's handle.
struct EngineSink {
    engine: OrchestrationEngine,
    top: RunId,
    out: Option<tokio::sync::mpsc::UnboundedSender<Event>>,
    metrics: crate::metrics::RunMetrics,
}

impl std::fmt::Debug for EngineSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineSink")
            .field("run", &self.top)
            .finish_non_exhaustive()
    }
}

impl orch_tasks::EventSink for EngineSink {
    fn event(&self, run: RunId, ev: Event) {
        self.metrics.event(&ev);
        let c = &self.engine.inner.counters;
        match &ev {
            Event::TaskSucceeded { .. } | Event::TaskCached { .. } => {
                c.tasks_completed.fetch_add(1, Ordering::Relaxed);
            }
            Event::TaskFailed { .. } => {
                c.tasks_failed.fetch_add(1, Ordering::Relaxed);
            }
            Event::TaskRetrying { .. } => {
                c.tasks_retried.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        // Engine events are built only when someone listens.
        if self.engine.wants_events() {
            if let Some(e) = EngineEvent::from_event(run, &ev) {
                self.engine.emit(e);
            }
        }
        if run == self.top {
            if let Some(tx) = &self.out {
                // A handle that stopped reading only stops listening.
                let _ = tx.send(ev);
            }
        }
    }
}
