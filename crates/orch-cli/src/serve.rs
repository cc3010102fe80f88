//! `orch serve`: the HTTP API (docs/server.md) on one engine, until SIGINT or SIGTERM.
//!
//! The bearer token is made at first start in `$ORCH_HOME/server-token`
//! (mode 0600) and printed that once; later starts name the file. Every
//! start prints the dashboard's link, with the token in its fragment. On a
//! signal the server stops taking requests, its event streams end, and runs
//! it started are given a few seconds, then cancelled (`orch resume` goes on
//! with them).

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
        let listener = match tokio::net::TcpListener::bind(args.bind).await {
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
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        let config = orch_server::ServerConfig {
            body_limit: args.body_limit,
            cors: args.cors.clone(),
            metrics: Some(orch_server::MetricsRender::new(move || metrics.render())),
            ..orch_server::ServerConfig::default()
        };
        // Schedules fire here while the server runs (one process of those
        // sharing the store fires each tick).
        let scheduler = crate::schedule::start(&engine, None);
        let served =
            orch_server::serve(engine.clone(), token, config, listener, shutdown).await;
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
