//! What only the binary installs: the tracing subscriber (`-v`, `-q`, `RUST_LOG`; log lines on standard error), the OpenTelemetry export (Cargo feature `otel`), and the Prometheus recorder of `orch serve`.
//!
//! The libraries record through the `tracing` and `metrics` facades and
//! install nothing (a tidy test checks that only this crate depends on a
//! subscriber or an exporter). By default only warnings and errors are
//! logged, so that what a command prints is unchanged; `-v` adds orch's
//! INFO events (a run's start and end, in a span per run), `-vv` DEBUG (a
//! span per attempt), `-vvv` TRACE; `-q` keeps errors only and silences the
//! run printer's live progress. `RUST_LOG`, when set, is the filter itself
//! (`RUST_LOG=orch_tasks=debug`).

use crate::exit;
use crate::term::Stream;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// `-v` given this many times (0 with `-q`).
static VERBOSE: AtomicU8 = AtomicU8::new(0);
/// `-q` was given.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Whether `-q` was given: the run printer prints no live progress.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Whether `-v` was given (log lines on standard error: no progress bar to garble).
pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed) > 0
}

/// The filter of `-v` given `verbose` times, or of `-q`.
fn filter_for(verbose: u8, quiet: bool) -> &'static str {
    match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "warn,orch=info",
        (false, 2) => "warn,orch=debug",
        (false, _) => "info,orch=trace",
    }
}

/// The filter `RUST_LOG` (when set and not empty) or the flags ask for.
///
/// # Errors
/// A `RUST_LOG` that does not parse, as one printable line.
fn filter(rust_log: Option<&str>, verbose: u8, quiet: bool) -> Result<EnvFilter, String> {
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        Some(spec) => EnvFilter::builder().parse(spec).map_err(|e| {
            format!(
                "orch: RUST_LOG={spec:?} is not a valid filter ({e}); \
                 write TARGET=LEVEL pairs, e.g. RUST_LOG=orch=debug or RUST_LOG=warn,orch_tasks=trace"
            )
        }),
        None => Ok(EnvFilter::new(filter_for(verbose, quiet))),
    }
}

/// What stays installed while orch runs; dropping it flushes the spans
/// waiting for export (feature `otel`).
#[derive(Debug, Default)]
pub struct Telemetry {
    #[cfg(feature = "otel")]
    otel: Option<otel::Provider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(p) = self.otel.take() {
            otel::shutdown(&p);
        }
    }
}

/// Installs the subscriber for `-v` given `verbose` times and `-q`, and
/// remembers both for the run printer.
///
/// # Errors
/// The exit code after a one-line message (a bad `RUST_LOG`).
pub fn init(verbose: u8, quiet: bool) -> Result<Telemetry, u8> {
    VERBOSE.store(if quiet { 0 } else { verbose }, Ordering::Relaxed);
    QUIET.store(quiet, Ordering::Relaxed);
    let rust_log = std::env::var("RUST_LOG").ok();
    let stderr_filter = filter(rust_log.as_deref(), verbose, quiet).map_err(|msg| {
        eprintln!("{msg}");
        exit::INVALID
    })?;
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(|| StderrLines)
        .with_filter(stderr_filter);
    let registry = tracing_subscriber::registry().with(stderr);
    #[cfg(feature = "otel")]
    let (registry, provider) = {
        // The exporter gets the run and attempt spans at least (DEBUG),
        // whatever stderr shows; RUST_LOG, when set, decides for both.
        let export_filter = filter(rust_log.as_deref(), verbose.max(2), false)
            .unwrap_or_else(|_| EnvFilter::new(filter_for(2, false)));
        let (layer, provider) = otel::layer(export_filter);
        (registry.with(layer), provider)
    };
    // Another subscriber already installed (a test harness) is left alone.
    let _ = registry.try_init();
    Ok(Telemetry {
        #[cfg(feature = "otel")]
        otel: provider,
    })
}

/// Standard error through `term`: log lines are escaped like everything
/// else orch prints (a step's name cannot drive the terminal), one write
/// per line.
struct StderrLines;

impl std::io::Write for StderrLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        crate::term::print(Stream::Err, format_args!("{text}"), false);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the Prometheus recorder (`orch serve`) with orch's histogram
/// buckets and metric descriptions, and returns its handle: `render` for
/// `GET /metrics`, `run_upkeep` to be called now and then.
///
/// # Errors
/// One printable line (a recorder was already installed).
pub fn install_prometheus() -> Result<metrics_exporter_prometheus::PrometheusHandle, String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    use orch_engine::metrics as m;
    let buckets = |b: PrometheusBuilder, name: &str, bounds: &[f64]| {
        b.set_buckets_for_metric(Matcher::Full(name.to_owned()), bounds)
            .map_err(|e| format!("orch: metrics: {e}"))
    };
    let b = PrometheusBuilder::new();
    let b = buckets(b, m::RUN_SECONDS, m::DURATION_BUCKETS)?;
    let b = buckets(b, m::ATTEMPT_SECONDS, m::DURATION_BUCKETS)?;
    let b = buckets(b, m::STORE_CALL_SECONDS, m::STORE_BUCKETS)?;
    let recorder = b.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|e| format!("orch: cannot install the metrics recorder: {e}"))?;
    m::init();
    Ok(handle)
}

#[cfg(feature = "otel")]
mod otel {
    //! Spans exported over OTLP/HTTP (protobuf) to the collector that the
    //! standard variables name (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it
    //! is, or `OTEL_EXPORTER_OTLP_ENDPOINT` plus `/v1/traces`), in batches
    //! from a thread of the SDK's own; nothing is exported when neither is
    //! set (or `OTEL_SDK_DISABLED=true`). A collector that fails costs a
    //! warning, never a run: the first failed export after a good one logs
    //! a WARN line, and the exit waits at most [`SHUTDOWN`] for the last
    //! batch.

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    use tracing_subscriber::EnvFilter;

    /// How long the exit waits for the spans not yet exported.
    const SHUTDOWN: Duration = Duration::from_secs(5);

    /// The provider to shut down at exit, and where it exports.
    #[derive(Debug)]
    pub(super) struct Provider {
        provider: SdkTracerProvider,
        endpoint: String,
    }

    /// Where the spans go, from the standard variables (`var` reads one;
    /// empty is unset): `None` when nothing is to be exported.
    ///
    /// # Errors
    /// One printable line for a configuration this build cannot honour
    /// (another protocol than `http/protobuf`, an address that is not
    /// `http://`).
    fn endpoint(var: impl Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
        let var = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let (name, url) = if let Some(url) = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url)
        } else if let Some(base) = var("OTEL_EXPORTER_OTLP_ENDPOINT") {
            let url = format!("{}/v1/traces", base.trim_end_matches('/'));
            ("OTEL_EXPORTER_OTLP_ENDPOINT", url)
        } else {
            return Ok(None);
        };
        for p in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(v) = var(p) {
                if v != "http/protobuf" {
                    return Err(format!(
                        "{p}={v:?} is not supported: orch exports OTLP over HTTP with protobuf \
                         only; unset it or set it to http/protobuf, and name the collector's \
                         HTTP port (usually 4318)"
                    ));
                }
                break;
            }
        }
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        if scheme.as_deref() != Some("http") {
            return Err(format!(
                "{name} gives {url:?}, which is not an http:// address; orch exports over \
                 plain HTTP (no TLS): give the collector's address as http://HOST:PORT \
                 (OTLP/HTTP is usually on port 4318)"
            ));
        }
        Ok(Some(url))
    }

    /// The export layer and its provider, when an endpoint is configured.
    pub(super) fn layer<S>(
        filter: EnvFilter,
    ) -> (Option<impl tracing_subscriber::Layer<S>>, Option<Provider>)
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        let endpoint = match endpoint(|v| std::env::var(v).ok()) {
            Ok(Some(url)) => url,
            Ok(None) => return (None, None),
            Err(e) => {
                eprintln!("orch: warning: OpenTelemetry export is off: {e}");
                return (None, None);
            }
        };
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(&endpoint)
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                eprintln!("orch: warning: OpenTelemetry export is off: {e}");
                return (None, None);
            }
        };
        let exporter = Reported {
            inner: exporter,
            endpoint: endpoint.clone(),
            failing: AtomicBool::new(false),
        };
        // `orch` unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES names the service.
        let resource = opentelemetry_sdk::Resource::builder().build();
        let named = resource
            .get(&opentelemetry::Key::from_static_str("service.name"))
            .is_some_and(|v| !v.as_str().starts_with("unknown_service"));
        let resource = if named {
            resource
        } else {
            opentelemetry_sdk::Resource::builder()
                .with_service_name("orch")
                .build()
        };
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("orch");
        let layer = tracing_subscriber::Layer::with_filter(
            tracing_opentelemetry::layer().with_tracer(tracer),
            filter,
        );
        (Some(layer), Some(Provider { provider, endpoint }))
    }

    /// Exports what is waiting (for at most [`SHUTDOWN`]), then stops the exporter.
    pub(super) fn shutdown(p: &Provider) {
        let t0 = std::time::Instant::now();
        if let Err(e) = p.provider.shutdown_with_timeout(SHUTDOWN) {
            let why = if t0.elapsed() >= SHUTDOWN {
                format!("did not answer within {} s", SHUTDOWN.as_secs())
            } else {
                format!("failed ({e})")
            };
            eprintln!(
                "orch: warning: OpenTelemetry export to {} {why}; the spans not yet exported are lost",
                p.endpoint
            );
        }
    }

    /// The OTLP exporter, which says when the collector starts failing: the
    /// SDK drops a failed batch without a word (its own logs are not built in).
    #[derive(Debug)]
    struct Reported {
        inner: opentelemetry_otlp::SpanExporter,
        endpoint: String,
        /// The last export failed (the next failure is not logged again).
        failing: AtomicBool,
    }

    impl SpanExporter for Reported {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            let spans = batch.len();
            let r = self.inner.export(batch).await;
            match &r {
                Ok(()) => self.failing.store(false, Ordering::Relaxed),
                Err(e) => {
                    if !self.failing.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            endpoint = %self.endpoint,
                            error = %e,
                            lost = spans,
                            "OpenTelemetry export failed; spans are lost until the collector answers"
                        );
                    }
                }
            }
            r
        }

        fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
            self.inner.shutdown_with_timeout(timeout)
        }

        fn force_flush(&self) -> OTelSdkResult {
            self.inner.force_flush()
        }

        fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
            self.inner.set_resource(resource);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_choose_the_level_and_rust_log_wins() {
        assert_eq!(filter_for(0, false), "warn");
        assert_eq!(filter_for(1, false), "warn,orch=info");
        assert_eq!(filter_for(2, false), "warn,orch=debug");
        assert_eq!(filter_for(5, false), "info,orch=trace");
        assert_eq!(filter_for(2, true), "error");
        let f = filter(Some("orch_tasks=trace"), 0, true).expect("parses");
        assert_eq!(f.to_string(), "orch_tasks=trace");
        // Empty is unset: the flags decide.
        let flags = filter(Some("  "), 3, false).expect("flags").to_string();
        assert!(flags.contains("orch=trace"), "{flags}");
        let bad = filter(Some("orch=loud"), 0, false).expect_err("refused");
        assert!(
            bad.contains("RUST_LOG=\"orch=loud\" is not a valid filter"),
            "{bad}"
        );
    }
}
