//! `orch serve`: the HTTP API (docs/server.md) on one engine, until SIGINT or SIGTERM.
//!
//! The bearer token is made at first start in `$ORCH_HOME/server-token`
//! (mode 0600) and printed that once; later starts name the file. Every
//! start prints the dashboard's link, with the token in its fragment. On a
//! signal the server stops taking requests, its event streams end, and runs
//! it started are given a few seconds, then cancelled (`orch resume` goes on
//! with them).
//!
//! The API answers on threads of its own (`--api-threads`, default one: a
//! single-threaded runtime), apart from the runtime the engine's runs,
//! schedules and metrics go on: a busy run does not slow the answers, nor
//! the answers a run, and with one thread an answer never waits for a
//! handover between threads (docs/server.md, "Threads").

use crate::exit;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// How long runs still going at shutdown may go on before they are cancelled.
const GRACE: Duration = Duration::from_secs(5);

/// What `orch serve` was given.
#[derive(Debug)]
pub struct ServeArgs {
    /// Where to listen.
    pub bind: SocketAddr,
    /// The one origin CORS allows.
    pub cors: Option<String>,
    /// The largest request body, in bytes.
    pub body_limit: usize,
    /// How many threads answer requests (at least 1).
    pub api_threads: usize,
}

/// Runs `orch serve`.
pub fn serve(config: Option<&Path>, args: &ServeArgs) -> u8 {
    let engine = match crate::manage::engine(config) {
        Ok(e) => e,
        Err(f) => return f.report(),
    };
    let token = match orch_server::Token::load_or_create(engine.home()) {
        Ok(t) => t,
        Err(msg) => {
            eprintln!("orch: {msg}");
            return exit::INVALID;
        }
    };
    // Installed before anything runs: every run's metrics are recorded.
    let metrics = match crate::telemetry::install_prometheus() {
        Ok(h) => h,
        Err(msg) => {
            eprintln!("{msg}");
            return exit::INTERNAL;
        }
    };
    let runtime = match crate::manage::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(async {
        // Histogram samples are folded in now and then, not only when scraped.
        let upkeep = metrics.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                upkeep.run_upkeep();
            }
        });
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("orch: cannot listen to SIGTERM and SIGINT: {e}");
                return exit::INTERNAL;
            }
        };
        let listener = match std::net::TcpListener::bind(args.bind)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
        {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "orch: cannot listen on {}: {e}; choose another address with --bind",
                    args.bind
                );
                return exit::INVALID;
            }
        };
        let addr = listener.local_addr().unwrap_or(args.bind);
        if !addr.ip().is_loopback() {
            eprintln!(
                "orch: warning: listening on {addr}, which other machines can reach; anyone with \
                 the token can run commands as this user (use --bind 127.0.0.1:PORT to stay local)"
            );
        }
        if token.created() {
            println!("token: {}", token.value());
            println!("(saved in {}, mode 0600)", token.path().display());
        } else {
            println!("token: in {}", token.path().display());
        }
        // The dashboard's link carries the token in its fragment, which the
        // browser keeps to itself: it is never sent to the server.
        println!("dashboard: http://{addr}/#token={}", token.value());
        println!(
            "orch serve: http://{addr} (store {}); GET /openapi.json lists the routes; Ctrl-C stops",
            engine.store_url()
        );
        let config = orch_server::ServerConfig {
            body_limit: args.body_limit,
            cors: args.cors.clone(),
            metrics: Some(orch_server::MetricsRender::new(move || metrics.render())),
            ..orch_server::ServerConfig::default()
        };
        // Runs started through the API go on this runtime, not the API's.
        engine.spawn_runs_on(tokio::runtime::Handle::current());
        // Schedules fire here while the server runs (one process of those
        // sharing the store fires each tick).
        let scheduler = crate::schedule::start(&engine, None);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut served = match api(
            engine.clone(),
            token,
            config,
            listener,
            args.api_threads,
            async move {
                let _ = stopped.await;
            },
        ) {
            Ok(rx) => rx,
            Err(e) => {
                eprintln!("orch: cannot start the API's thread: {e}");
                return exit::INTERNAL;
            }
        };
        let early = tokio::select! {
            r = &mut served => Some(r),
            _ = term.recv() => None,
            _ = int.recv() => None,
        };
        let served = match early {
            Some(r) => r,
            None => {
                let _ = stop.send(());
                served.await
            }
        }
        .unwrap_or_else(|_| Err(std::io::Error::other("the API's thread ended without a word")));
        if let Some(s) = scheduler {
            s.stop();
            s.join().await;
        }
        let code = match served {
            // Asked to stop by a signal: a graceful stop is a success.
            Ok(()) => {
                eprintln!("orch: stopped");
                exit::OK
            }
            Err(e) => {
                eprintln!("orch: the server failed: {e}");
                exit::FAILED
            }
        };
        if !engine.shutdown(GRACE).await {
            eprintln!(
                "orch: runs still going after {GRACE:?} were cancelled; `orch runs list` shows them"
            );
        }
        code
    })
}

/// Serves the API on a thread of its own, on a runtime of `threads`
/// threads (a single-threaded one for 1), until `shutdown`; the receiver
/// gets the outcome.
fn api(
    engine: orch_engine::OrchestrationEngine,
    token: orch_server::Token,
    config: orch_server::ServerConfig,
    listener: std::net::TcpListener,
    threads: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<tokio::sync::oneshot::Receiver<std::io::Result<()>>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("orch-api".into())
        .spawn(move || {
            let rt = if threads <= 1 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .thread_name("orch-api")
                    .enable_all()
                    .build()
            };
            let served = rt.and_then(|rt| {
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    orch_server::serve(engine, token, config, listener, shutdown).await
                })
            });
            let _ = tx.send(served);
        })?;
    Ok(rx)
}
