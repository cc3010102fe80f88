//! `GET /metrics`: the metrics of this process in the Prometheus text format, rendered by what the binary installed.
//!
//! The server installs no recorder (only the binary does: `orch serve`
//! installs `metrics-exporter-prometheus` and hands its renderer over in
//! [`ServerConfig::metrics`](crate::ServerConfig::metrics)). Before each
//! render the counts of the runs going on are folded in
//! (`orch_engine::metrics::publish`) and the workers gauge is set from the
//! store's worker records, so a scrape sees both as they are then. The route needs the
//! bearer token like every route but `/health` (docs/server.md says why).

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use orch_model::ErrorCode;
use std::sync::Arc;

/// The content type of Prometheus' text exposition format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders the installed recorder's metrics as Prometheus text (for
/// example `PrometheusHandle::render` of metrics-exporter-prometheus).
#[derive(Clone)]
pub struct MetricsRender(Arc<dyn Fn() -> String + Send + Sync>);

impl MetricsRender {
    /// A renderer from a function.
    pub fn new(render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        Self(Arc::new(render))
    }

    /// The current metrics, as text.
    pub fn render(&self) -> String {
        (self.0)()
    }
}

impl std::fmt::Debug for MetricsRender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsRender(..)")
    }
}

/// `GET /metrics`: the workers gauge brought up to date, then the recorder's
/// text; 501 when the server was given no renderer.
pub(crate) async fn metrics(State(st): State<AppState>) -> ApiResult<Response> {
    let Some(render) = st.metrics() else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            ErrorCode::NotSupported,
            "NotSupportedError",
            "this server records no metrics: it was started without a metrics recorder \
             (`orch serve` installs one; a library user passes ServerConfig::metrics)"
                .into(),
        ));
    };
    // The counts of the runs going on, and their ready and running steps.
    orch_engine::metrics::publish();
    // A store that cannot list its workers leaves the gauge as it was: the
    // other metrics are still worth answering with.
    if let Err(e) = orch_engine::metrics::record_workers(st.engine()).await {
        tracing::warn!(error = %e, "metrics: cannot read the workers' records");
    }
    let body = render.render();
    Ok(([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], body).into_response())
}
