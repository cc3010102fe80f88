//! `orch-server`: the HTTP face of the engine (`orch serve`): a JSON API, Server-Sent Events of a run's events, and an OpenAPI document made from the route table.
//!
//! The server is a client of [`OrchestrationEngine`], beside the CLI and
//! the MCP server: every run starts through `OrchestrationEngine::run`, and
//! runs, steps and events are read from the engine's store, so a run of
//! another process (or of `orch worker`s) is seen as well as one started
//! here. Every route but `GET /health` needs `Authorization: Bearer TOKEN`;
//! errors are the seed's `ErrorResponse` with a fitting status code.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use orch_server::{ServerConfig, Token};
//! let engine = orch_engine::OrchestrationEngine::builder().from_env().build()?;
//! let token = Token::load_or_create(engine.home())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! orch_server::serve(engine, token, ServerConfig::default(), listener, std::future::pending()).await?;
//! # Ok(()) }
//! ```

mod error;
mod guard;
mod metrics;
mod params;
mod routes;
mod token;
mod ui;

mod output;
mod projects;
mod runs;
mod schedules;
mod stream;
mod system;
mod workflows;

pub use error::{ApiError, ApiResult, JsonBody, status_of};
pub use metrics::{MetricsRender, PROMETHEUS_TEXT};
pub use routes::{ROUTES, Route, openapi};
pub use token::{TOKEN_FILE, Token, constant_time_eq};
pub use ui::{ASSETS, Asset};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use orch_engine::OrchestrationEngine;
use orch_model::{OrchestrationError, RunId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// The default request body limit: 16 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 16 << 20;

/// How the server behaves (the listener and the token are given apart).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The largest request body accepted (bytes); larger ones get 413.
    pub body_limit: usize,
    /// The one origin allowed by CORS (`--cors ORIGIN`); none by default.
    pub cors: Option<String>,
    /// How often a stream looks in the store for a run's new events.
    pub poll: Duration,
    /// What `GET /metrics` answers with (the binary's installed recorder);
    /// none: the route answers 501.
    pub metrics: Option<MetricsRender>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            body_limit: DEFAULT_BODY_LIMIT,
            cors: None,
            poll: Duration::from_millis(200),
            metrics: None,
        }
    }
}

/// A run this server started and still drives: asked to stop by its token.
struct Driven {
    cancel: tokio_util::sync::CancellationToken,
    /// While it waits for a slot of its concurrency key, before it is
    /// recorded: the key, the limit, the holders.
    waiting: Option<serde_json::Value>,
}

struct Shared {
    engine: OrchestrationEngine,
    token: Token,
    config: ServerConfig,
    /// Runs started here that have not ended (their handles are held by
    /// tasks of the runtime; dropping one would abort its run).
    driven: Mutex<HashMap<RunId, Driven>>,
    /// Set when the server stops, so that event streams end.
    stopping: watch::Receiver<bool>,
    /// Woken when a run started here ends (streams look at once).
    ended: Notify,
    /// How each run's stored steps are shown, by run (made from its
    /// definition, which never changes; at most [`SHOWN_KEPT`]).
    shown: Mutex<HashMap<RunId, Arc<orch_engine::Shown>>>,
}

/// Most runs whose [`orch_engine::Shown`] is kept (all are dropped when
/// one more comes: each is made again from one read).
const SHOWN_KEPT: usize = 1024;

/// What every handler gets.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

impl AppState {
    pub(crate) fn engine(&self) -> &OrchestrationEngine {
        &self.0.engine
    }
    pub(crate) fn token(&self) -> &Token {
        &self.0.token
    }
    pub(crate) fn cors(&self) -> Option<&str> {
        self.0.config.cors.as_deref()
    }
    pub(crate) fn poll(&self) -> Duration {
        self.0.config.poll
    }
    pub(crate) fn metrics(&self) -> Option<&MetricsRender> {
        self.0.config.metrics.as_ref()
    }
    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.0.stopping.clone()
    }
    pub(crate) fn ended(&self) -> &Notify {
        &self.0.ended
    }
    fn driven(&self) -> MutexGuard<'_, HashMap<RunId, Driven>> {
        self.0
            .driven
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    /// Keeps a run started here until it ends; `waiting`: what it waits
    /// for, when it waits for a slot of its concurrency key.
    pub(crate) fn drive(&self, handle: orch_engine::RunHandle, waiting: Option<serde_json::Value>) {
        let id = handle.run_id();
        self.driven().insert(
            id,
            Driven {
                cancel: handle.cancel_token(),
                waiting,
            },
        );
        let st = self.clone();
        // On the runs' runtime: the handle lives as long as its run, also
        // when the server's own runtime ends first.
        self.engine().spawn(async move {
            // The outcome is in the store; a run that could not be recorded
            // has nothing more to tell here.
            let _ = handle.report().await;
            st.driven().remove(&id);
            st.ended().notify_waiters();
        });
    }
    /// How run `run`'s stored steps are shown: a step a worker skipped or
    /// that gathered a fan-out's items made no attempt, although the
    /// worker's claim counted one in the store (`orch_engine::Shown`, as
    /// `orch runs show` shows them).
    pub(crate) async fn shown(
        &self,
        run: RunId,
    ) -> Result<Arc<orch_engine::Shown>, OrchestrationError> {
        if let Some(s) = self.shown_map().get(&run) {
            return Ok(s.clone());
        }
        let definition = self
            .engine()
            .store()
            .get_run(run)
            .await?
            .map(|r| r.definition)
            .unwrap_or_default();
        let s = Arc::new(orch_engine::Shown::of_saved(&definition));
        let mut m = self.shown_map();
        if m.len() >= SHOWN_KEPT {
            m.clear();
        }
        m.insert(run, s.clone());
        Ok(s)
    }
    fn shown_map(&self) -> MutexGuard<'_, HashMap<RunId, Arc<orch_engine::Shown>>> {
        self.0
            .shown
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    /// What run `id`, started here, waits for, while it waits for its
    /// concurrency key and is not recorded yet.
    pub(crate) fn waiting(&self, id: RunId) -> Option<serde_json::Value> {
        self.driven().get(&id).and_then(|d| d.waiting.clone())
    }
    /// Whether a run started here is still going.
    pub(crate) fn is_driven(&self, id: RunId) -> bool {
        self.driven().contains_key(&id)
    }
    /// Asks a run started here to stop; false when it is not one.
    pub(crate) fn cancel_driven(&self, id: RunId) -> bool {
        match self.driven().get(&id) {
            Some(d) => {
                d.cancel.cancel();
                true
            }
            None => false,
        }
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The application: every route of [`ROUTES`], behind the path check, CORS
/// (when configured), the token check and the body limit. `stopping` turns
/// true when the server stops (event streams then end).
pub fn router(
    engine: OrchestrationEngine,
    token: Token,
    config: ServerConfig,
    stopping: watch::Receiver<bool>,
) -> Router {
    let limit = config.body_limit;
    let st = AppState(Arc::new(Shared {
        engine,
        token,
        config,
        driven: Mutex::new(HashMap::new()),
        stopping,
        ended: Notify::new(),
        shown: Mutex::new(HashMap::new()),
    }));
    let mut app: Router<AppState> = Router::new();
    for r in ROUTES {
        app = app.route(r.path, (r.handler)());
    }
    let api = app
        .fallback(routes::no_route)
        .method_not_allowed_fallback(routes::wrong_method)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            st.clone(),
            guard::gate,
        ))
        .with_state(st);
    // The dashboard's files need no token (they hold no data); the API's
    // layers stay around the API's routes only.
    ui::router().merge(api)
}

/// Serves the API on `listener` until `shutdown` completes; then stops
/// taking connections, ends the event streams, and waits for the requests
/// in flight. Runs started here go on: stop them with
/// [`OrchestrationEngine::shutdown`] after this returns.
///
/// # Errors
/// The listener's I/O error.
pub async fn serve(
    engine: OrchestrationEngine,
    token: Token,
    config: ServerConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = watch::channel(false);
    let app = router(engine, token, config, rx);
    // An answer is sent as soon as it is written, not held back by Nagle's
    // algorithm waiting for the client's acknowledgement of the last one.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = tx.send(true);
        })
        .await
}
