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
        // The exporter gets the run spans at least (INFO), whatever stderr shows.
        let export_filter = filter(rust_log.as_deref(), verbose.max(1), false)
            .unwrap_or_else(|_| EnvFilter::new(filter_for(1, false)));
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
    //! standard variables name (`OTEL_EXPORTER_OTLP_ENDPOINT`, or
    //! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), in batches from a thread of
    //! the SDK's own; nothing is exported when neither is set.

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::EnvFilter;

    pub(super) type Provider = SdkTracerProvider;

    /// The export layer and its provider, when an endpoint is configured.
    pub(super) fn layer<S>(
        filter: EnvFilter,
    ) -> (
        Option<impl tracing_subscriber::Layer<S>>,
        Option<SdkTracerProvider>,
    )
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        let configured = [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
        if !configured {
            return (None, None);
        }
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                eprintln!("orch: warning: OpenTelemetry export is off: {e}");
                return (None, None);
            }
        };
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name("orch")
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("orch");
        let layer = tracing_subscriber::Layer::with_filter(
            tracing_opentelemetry::layer().with_tracer(tracer),
            filter,
        );
        (Some(layer), Some(provider))
    }

    /// Exports what is waiting, then stops the exporter.
    pub(super) fn shutdown(p: &SdkTracerProvider) {
        if let Err(e) = p.shutdown() {
            eprintln!("orch: warning: OpenTelemetry export: {e}");
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
