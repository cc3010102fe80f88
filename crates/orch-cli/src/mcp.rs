//! `orch mcp`: the Model Context Protocol server on standard input and output.
//!
//! Standard output carries protocol messages only; what orch has to say goes
//! to standard error. The server ends when the client closes standard input
//! (or on SIGTERM/SIGINT); runs it started that are still going are then
//! given a few seconds, then cancelled (they can be resumed with `orch resume`).

use crate::exit;
use std::path::Path;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// How long runs still going when the client leaves may go on before they are cancelled.
const GRACE: Duration = Duration::from_secs(5);

/// Runs `orch mcp` until the client closes the connection or a signal.
pub fn mcp(config: Option<&Path>) -> u8 {
    let engine = match crate::manage::engine(config) {
        Ok(e) => e,
        Err(f) => return f.report(),
    };
    let runtime = match crate::manage::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let code = runtime.block_on(async {
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
        eprintln!(
            "orch: MCP server on stdio (store {}); it ends when the client closes the connection",
            engine.store_url()
        );
        let server = orch_mcp::McpServer::new(engine.clone());
        let code = tokio::select! {
            r = server.serve_stdio() => match r {
                Ok(()) => exit::OK,
                Err(e) => {
                    eprintln!("orch: {e}");
                    exit::FAILED
                }
            },
            _ = term.recv() => exit::SIGNAL_BASE + 15,
            _ = int.recv() => exit::SIGNAL_BASE + 2,
        };
        if !engine.shutdown(GRACE).await {
            eprintln!(
                "orch: runs still going after {GRACE:?} were cancelled; `orch runs list` shows them"
            );
        }
        code
    });
    // A read of standard input still pending cannot be cancelled; do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(200));
    code
}
