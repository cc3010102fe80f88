//! Building an engine.

#[allow(clippy::wildcard_imports)]
use super::*;
/// Builds an [`OrchestrationEngine`].
#[derive(Debug, Default)]
pub struct EngineBuilder {
    config: EngineConfig,
    home: Option<PathBuf>,
    work_dir: Option<PathBuf>,
    registry: Option<ActionRegistry>,
    store: Option<(Arc<dyn Store>, String)>,
    stores: Option<StoreRegistry>,
    use_env: bool,
}

impl EngineBuilder {
    /// The seed's configuration (keys left unset keep their defaults).
    #[must_use]
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Reads the seed's JSON configuration file.
    ///
    /// # Errors
    /// As [`EngineConfig::from_file`].
    pub fn config_file(mut self, path: &Path) -> Result<Self, OrchestrationError> {
        self.config = EngineConfig::from_file(path)?;
        Ok(self)
    }

    /// Also reads `ORCH_HOME`, `ORCH_MAX_WORKERS`, `ORCH_STORE_URL` and the
    /// `CODOMYRMEX_*` aliases (values in the config win).
    #[must_use]
    pub fn from_env(mut self) -> Self {
        self.use_env = true;
        self
    }

    /// The home directory the defaults live under (default `$ORCH_HOME` or `./.orch`).
    #[must_use]
    pub fn home(mut self, dir: impl Into<PathBuf>) -> Self {
        self.home = Some(dir.into());
        self
    }

    /// Where workflows that are not part of a project run (default: the current directory).
    #[must_use]
    pub fn work_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.work_dir = Some(dir.into());
        self
    }

    /// Records runs, sessions, projects and cached results in `store` (a
    /// store written outside the workspace, a wrapper around one, a shared
    /// one), instead of opening the configured `store_url`.
    #[must_use]
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some((store, "custom://".to_owned()));
        self
    }

    /// The schemes `store_url` may name (default: [`StoreRegistry::default`]).
    #[must_use]
    pub fn stores(mut self, stores: StoreRegistry) -> Self {
        self.stores = Some(stores);
        self
    }

    /// The actions available (default: the built-ins).
    #[must_use]
    pub fn registry(mut self, registry: ActionRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Builds the engine. Nothing is written until work asks for it.
    ///
    /// # Errors
    /// `InvalidParameters` for bad configuration; `Unsupported` for a store
    /// URL other than `memory://`; `Io` for unreadable directories or resources file.
    pub fn build(self) -> Result<OrchestrationEngine, OrchestrationError> {
        let mut config = self.config;
        let env_home = if self.use_env {
            Some(config.apply_env(&|k| std::env::var(k).ok())?)
        } else {
            None
        };
        let home = self
            .home
            .or(env_home)
            .unwrap_or_else(|| PathBuf::from(".orch"));
        let store_url = config
            .store_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", home.join("orch.db").display()));
        let (store, store_url) = match self.store {
            Some((store, label)) => (store, config.store_url.clone().unwrap_or(label)),
            None => (
                self.stores
                    .unwrap_or_default()
                    .open(&store_url, OpenOptions::default())?,
                store_url,
            ),
        };
        let max_workers = config.max_workers.unwrap_or(4).max(1);
        let registry = self.registry.unwrap_or_else(ActionRegistry::with_builtins);
        let resources = match &config.resource_config {
            Some(p) => Arc::new(ResourceManager::load(p)?),
            None => {
                let default = home.join("resources.json");
                if default.is_file() {
                    Arc::new(ResourceManager::load(&default)?)
                } else {
                    Arc::new(ResourceManager::detect())
                }
            }
        };
        // `cache: true` steps share one result cache in the store, unless turned off.
        let cache: Option<Arc<dyn orch_tasks::ResultCache>> = if config.cache == Some(false) {
            None
        } else {
            Some(Arc::new(StoreCache::new(store.clone())?))
        };
        let work_dir = self.work_dir.unwrap_or_else(|| PathBuf::from("."));
        let mut wb = WorkflowManager::builder(
            config
                .workflows_dir
                .clone()
                .unwrap_or_else(|| home.join("workflows")),
        )
        .registry(registry.clone())
        .work_dir(work_dir.clone())
        .max_parallel(max_workers)
        .resources(resources.clone())
        .store(store.clone());
        if let Some(c) = &cache {
            wb = wb.cache(c.clone());
        }
        let workflows = wb.build()?;
        // The workflows that templates name are available by name too, unless
        // workflows_dir defines its own of the same name.
        orch_projects::add_template_workflows(&workflows)?;
        let tasks = orch_tasks::TaskOrchestrator::new(orch_tasks::OrchestratorConfig {
            registry: Arc::new(workflows.registry().clone()),
            work_dir,
            max_parallel_tasks: max_workers,
            ..orch_tasks::OrchestratorConfig::default()
        });
        let mut pb = ProjectManager::builder(
            config
                .projects_dir
                .clone()
                .unwrap_or_else(|| home.join("projects")),
        )
        .templates_dir(
            config
                .templates_dir
                .clone()
                .unwrap_or_else(|| home.join("templates")),
        )
        .registry(registry)
        .store(store.clone());
        if let Some(c) = &cache {
            pb = pb.cache(c.clone());
        }
        let projects = pb.build()?;
        let (events, _) = broadcast::channel(4096);
        let store_for_records = store.clone();
        let cleanup = Duration::from_secs(config.cleanup_interval.unwrap_or(300).max(1));
        let session_history = config
            .session_history
            .unwrap_or(orch_workflows::RUN_HISTORY);
        let engine = OrchestrationEngine {
            inner: Arc::new(Inner {
                session_timeout: config.session_timeout.unwrap_or(3600),
                config,
                home,
                workflows,
                projects,
                resources,
                store,
                // Shown in messages and status: never with its password.
                store_url: orch_model::store::redact_url(&store_url),
                cache,
                max_workers,
                sessions: Mutex::new(HashMap::new()),
                ended: Mutex::new(VecDeque::new()),
                session_history,
                tasks,
                task_counts: Mutex::new(TaskCounts::default()),
                tasks_running: AtomicUsize::new(0),
                events,
                handlers: Mutex::new(Vec::new()),
                accepting: AtomicBool::new(true),
                running: AtomicUsize::new(0),
                idle: Notify::new(),
                shutdown: CancellationToken::new(),
                counters: Counters::default(),
                started: Instant::now(),
                records: orch_tasks::RecordWriter::new(store_for_records)?,
                runtime: std::sync::OnceLock::new(),
            }),
        };
        // Expired sessions are also ended on every call; this sweep every
        // `cleanup_interval` releases their resources when nobody calls. It
        // runs when the engine is built inside a tokio runtime and ends with
        // the engine.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&engine.inner);
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(cleanup).await;
                    let Some(inner) = weak.upgrade() else { break };
                    OrchestrationEngine { inner }.sweep();
                }
            });
        }
        Ok(engine)
    }
}
