//! `orch-mcp`: a Model Context Protocol server (stdio) over one
//! [`OrchestrationEngine`], offering the tools the original module documented
//! (`execute_workflow`, `create_workflow`, `list_workflows`,
//! `create_project`, `list_projects`, `execute_task`, `get_system_status`,
//! `get_health_status`, `allocate_resources`, `create_complex_workflow`,
//! `manage_project`) and `get_run`, `cancel_run` and `release_resources` for
//! work that outlives a call. docs/mcp.md describes every tool.
//!
//! Every tool works on the same engine, so a workflow one tool creates is
//! found by the next. A tool's result is one JSON shape (in
//! `structuredContent`, and as text in `content`): `{"success": true,
//! "data": {...}, "metadata": {...}}`, or, when the tool could not do its
//! work, `isError: true` with the engine's error response `{"success":
//! false, "error", "error_type", "error_code", "details", "suggestions",
//! "metadata"}`. Arguments that do not fit a tool's input schema, and an
//! unknown tool, are JSON-RPC errors `-32602` (invalid params).
//!
//! ```
//! use orch_engine::OrchestrationEngine;
//! use orch_mcp::McpServer;
//! use serde_json::json;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let engine = OrchestrationEngine::builder().home(dir.path()).work_dir(dir.path()).build().unwrap();
//! let server = McpServer::new(engine);
//! let rt = tokio::runtime::Runtime::new().unwrap();
//! let out = rt.block_on(server.call_tool("list_workflows", None)).unwrap();
//! assert!(!out.is_error);
//! assert_eq!(out.value["success"], json!(true));
//! ```

mod args;
mod catalog;
mod jobs;
mod projects;
mod runs;
mod system;

use args::Args;
use orch_engine::OrchestrationEngine;
use orch_model::OrchestrationError;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ErrorData, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, ServiceExt};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// The MCP server: the tools over one engine. Cloning is cheap and shares
/// the engine and the runs it started.
#[derive(Debug, Clone)]
pub struct McpServer {
    engine: OrchestrationEngine,
    jobs: Arc<jobs::Jobs>,
}

/// What a tool call gave: its result in the one documented shape, and
/// whether it is a tool error (`isError`).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    /// `true` when the tool could not do its work (`value` is then the error response).
    pub is_error: bool,
    /// `{"success", "data", "metadata"}`, or the error response with `metadata`.
    pub value: Value,
}

/// A call the server refuses before any tool runs (a JSON-RPC error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// The JSON-RPC code: `-32602` (invalid params) for an unknown tool or
    /// arguments that do not fit the tool's input schema.
    pub code: i32,
    /// What was wrong and what to send instead.
    pub message: String,
}

/// JSON-RPC's "invalid params".
pub const INVALID_PARAMS: i32 = -32602;

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for CallError {}

impl McpServer {
    /// A server whose every tool works on `engine`.
    pub fn new(engine: OrchestrationEngine) -> Self {
        Self {
            engine,
            jobs: Arc::default(),
        }
    }

    /// The engine the tools work on.
    pub fn engine(&self) -> &OrchestrationEngine {
        &self.engine
    }

    /// The tools as `tools/list` gives them: name, description, input schema, annotations.
    pub fn tools() -> Vec<Tool> {
        catalog::TOOLS
            .iter()
            .map(|t| {
                Tool::new(t.name, t.description, Arc::new(args::schema(t.fields))).with_annotations(
                    ToolAnnotations::new()
                        .read_only(t.read_only)
                        .destructive(false)
                        .open_world(false),
                )
            })
            .collect()
    }

    /// Calls a tool as `tools/call` does.
    ///
    /// # Errors
    /// [`CallError`] `-32602` for an unknown tool or arguments that do not
    /// fit its input schema. Everything that goes wrong once the tool runs is
    /// a [`ToolOutcome`] with `is_error`.
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: Option<Map<String, Value>>,
    ) -> Result<ToolOutcome, CallError> {
        let Some(spec) = catalog::find(name) else {
            let names: Vec<&str> = catalog::TOOLS.iter().map(|t| t.name).collect();
            return Err(CallError {
                code: INVALID_PARAMS,
                message: format!("Unknown tool: {name}; the tools: {}", names.join(", ")),
            });
        };
        let args = Args::check(name, spec.fields, arguments).map_err(|message| CallError {
            code: INVALID_PARAMS,
            message,
        })?;
        let result = self.dispatch(name, &args).await;
        Ok(envelope(name, result))
    }

    async fn dispatch(&self, name: &str, a: &Args) -> Result<Value, OrchestrationError> {
        match name {
            "execute_workflow" => self.execute_workflow(a).await,
            "create_workflow" => self.create_workflow(a),
            "list_workflows" => Ok(self.list_workflows()),
            "create_project" => self.create_project(a).await,
            "list_projects" => Ok(self.list_projects()),
            "execute_task" => self.execute_task(a).await,
            "get_system_status" => Ok(self.system_status(a)),
            "get_health_status" => Ok(self.health_status().await),
            "allocate_resources" => self.allocate_resources(a).await,
            "release_resources" => self.release_resources(a),
            "create_complex_workflow" => self.create_complex_workflow(a).await,
            "manage_project" => self.manage_project(a),
            "get_run" => self.get_run(a).await,
            "cancel_run" => self.cancel_run(a),
            other => Err(OrchestrationError::Unsupported {
                message: format!("the tool `{other}` is listed but has no handler (a bug)"),
            }),
        }
    }

    /// Serves the protocol on `reader`/`writer` until the client closes it.
    ///
    /// # Errors
    /// A message when the session could not start (no `initialize`) or ended abnormally.
    pub async fn serve<R, W>(self, reader: R, writer: W) -> Result<(), String>
    where
        R: tokio::io::AsyncRead + Send + Unpin + 'static,
        W: tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let running = ServiceExt::serve(self, (reader, writer))
            .await
            .map_err(|e| format!("the MCP session did not start: {e}"))?;
        running
            .waiting()
            .await
            .map(|_| ())
            .map_err(|e| format!("the MCP session ended abnormally: {e}"))
    }

    /// Serves the protocol on standard input and output (nothing else is
    /// written to standard output).
    ///
    /// # Errors
    /// As [`McpServer::serve`].
    pub async fn serve_stdio(self) -> Result<(), String> {
        let (r, w) = rmcp::transport::stdio();
        self.serve(r, w).await
    }
}

/// A tool's result in the one documented shape.
fn envelope(tool: &str, result: Result<Value, OrchestrationError>) -> ToolOutcome {
    let meta = jobs::metadata(tool, Map::new());
    match result {
        Ok(data) => ToolOutcome {
            is_error: false,
            value: json!({"success": true, "data": data, "metadata": meta}),
        },
        Err(e) => {
            let mut v = serde_json::to_value(e.to_response()).unwrap_or_else(
                |_| json!({"success": false, "error": e.to_string(), "error_type": e.error_type()}),
            );
            if let Value::Object(m) = &mut v {
                m.insert("metadata".into(), meta);
            }
            ToolOutcome {
                is_error: true,
                value: v,
            }
        }
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("orch", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "orch runs workflows (DAGs of steps) and tasks, creates projects from templates, \
                 and reports status and health. Create a workflow with create_workflow, run it \
                 with execute_workflow; a long run returns its run_id: read it with get_run.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(Self::tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        Self::tools().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        match self.call_tool(&request.name, request.arguments).await {
            Ok(out) if out.is_error => Ok(CallToolResult::structured_error(out.value).into()),
            Ok(out) => Ok(CallToolResult::structured(out.value).into()),
            Err(e) => Err(ErrorData::invalid_params(e.message, None)),
        }
    }
}
