//! The floor under `orch serve`'s figures (`server-load`): the same HTTP
//! stack (axum on one thread's tokio runtime, as `orch serve` answers by
//! default, `TCP_NODELAY`) answering
//! every request with fixed bytes, with no store, no token check and no
//! serialisation. `server-load` gives it orch's own answer to
//! `GET /runs/{id}` and loads both with the same `wrk`, so that the report
//! shows what the machine, the load tool and the HTTP stack cost before
//! orch does anything.
//!
//! `http-floor BODY_FILE`: serves the file's bytes as `application/json`
//! on a free loopback port and prints `listening: ADDR` on stdout.

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use std::io::Write;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: http-floor BODY_FILE");
        std::process::exit(2);
    };
    let body = match std::fs::read(&path) {
        Ok(b) => axum::body::Bytes::from(b),
        Err(e) => {
            eprintln!("http-floor: {path}: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("http-floor: runtime: {e}");
            std::process::exit(1);
        });
    rt.block_on(async move {
        let app = axum::Router::new().fallback(move || {
            let body = body.clone();
            async move { ([(CONTENT_TYPE, "application/json")], body).into_response() }
        });
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("http-floor: bind: {e}");
                std::process::exit(1);
            }
        };
        if let Ok(addr) = listener.local_addr() {
            println!("listening: {addr}");
            let _ = std::io::stdout().flush();
        }
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("http-floor: {e}");
            std::process::exit(1);
        }
    });
}
