//! The route table: every route's method, path, summary, body and query, from which both the router and `/openapi.json` are made (so the two cannot differ).

use crate::error::{ApiError, ApiResult};
use crate::{AppState, metrics, projects, runs, schedules, stream, system, workflows};
use axum::Json;
use axum::http::{Method, Uri};
use axum::routing::{MethodFilter, MethodRouter, on};
use serde_json::{Map, Value, json};

/// One route of the API.
#[derive(Debug)]
pub struct Route {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: &'static str,
    /// The path, with `{param}` segments.
    pub path: &'static str,
    /// What it does, one line.
    pub summary: &'static str,
    /// The status of a successful answer.
    pub ok: u16,
    /// The request body's schema (a name of the document's components), if it takes one.
    pub body: Option<&'static str>,
    /// Query parameters: name and meaning.
    pub query: &'static [(&'static str, &'static str)],
    /// Whether it needs the bearer token (every route but `/health`).
    pub auth: bool,
    /// Whether it answers with Server-Sent Events instead of JSON.
    pub sse: bool,
    /// Whether it answers with text (Prometheus' format) instead of JSON.
    pub text: bool,
    pub(crate) handler: fn() -> MethodRouter<AppState>,
}

macro_rules! route {
    ($m:ident $path:literal, $summary:literal, $h:path $(, $k:ident = $v:expr)* $(,)?) => {
        Route {
            method: stringify!($m),
            path: $path,
            summary: $summary,
            handler: || on(MethodFilter::$m, $h),
            $($k: $v,)*
            ..BASE
        }
    };
}

const BASE: Route = Route {
    method: "",
    path: "",
    summary: "",
    ok: 200,
    body: None,
    query: &[],
    auth: true,
    sse: false,
    text: false,
    handler: || MethodRouter::new(),
};

const AFTER: (&str, &str) = (
    "after",
    "only events with a sequence number above this one (a cursor; default 0)",
);

/// Every route of the API.
pub static ROUTES: &[Route] = &[
    route!(GET "/health", "The engine's health: overall status, each component's, issues (no token needed)", system::health, auth = false),
    route!(GET "/openapi.json", "This API's OpenAPI 3.1 document, made from the route table", openapi_doc),
    route!(GET "/metrics", "This process's metrics in the Prometheus text format (docs/server.md lists them)", metrics::metrics, text = true),
    route!(GET "/status", "The system's status: workflows, projects, tasks, resources, performance", system::status),
    route!(GET "/resources", "The resources `resource_aware` runs allocate from, and their usage", system::resources),
    route!(GET "/sessions", "The engine's sessions (open and recently ended)", system::sessions),
    route!(POST "/sessions", "Create a session (mode, parallelism, timeout, resources)", system::create_session, ok = 201, body = Some("SessionOptions")),
    route!(GET "/sessions/{id}", "One session", system::session),
    route!(DELETE "/sessions/{id}", "Close a session", system::close_session),
    route!(GET "/workflows", "The names of the known workflows, with load problems", workflows::list),
    route!(POST "/validate", "Validate a posted definition: every problem with its path, line and column", workflows::validate, body = Some("Definition")),
    route!(GET "/workflows/{name}", "A workflow's definition and execution levels", workflows::get),
    route!(PUT "/workflows/{name}", "Validate a definition and save it as this workflow", workflows::save, body = Some("Definition")),
    route!(GET "/runs", "Runs, newest first, filtered by status, workflow and creation time", runs::list, query = &[
        ("status", "running, completed, failed, cancelled, interrupted or queued"),
        ("workflow", "the workflow's name"),
        ("since", "created at or after this time (RFC 3339)"),
        ("until", "created before this time (RFC 3339)"),
        ("limit", "most runs returned (default 50, at most 10000)"),
    ]),
    route!(POST "/runs", "Start a run of a workflow by name or of a posted definition", runs::submit, ok = 202, body = Some("RunSubmission")),
    route!(GET "/runs/{id}", "A run: state, task counts, parameters (id or unique prefix)", runs::get, query = &[
        ("definition", "true to include the run's saved definition"),
    ]),
    route!(GET "/runs/{id}/steps", "A run's steps: state, attempts, times, result", runs::steps, query = &[
        ("status", "only steps in this state"),
        ("offset", "skip this many steps (default 0)"),
        ("limit", "most steps returned (default 1000, at most 100000)"),
    ]),
    route!(GET "/runs/{id}/steps/{step}", "One step of a run, with its result", runs::step),
    route!(GET "/runs/{id}/steps/{step}/logs", "A step's captured output: stdout, stderr, exit code (so far, while it runs)", runs::logs),
    route!(GET "/runs/{id}/steps/{step}/logs/stream", "A step's output as Server-Sent Events, live, until the step ends", crate::output::stream, sse = true, query = &[
        ("after", "only chunks with a number above this one (a cursor; default 0)"),
    ]),
    route!(GET "/runs/{id}/events", "A run's stored events after a cursor", runs::events, query = &[
        AFTER,
        ("limit", "most events returned (default 1000, at most 100000)"),
    ]),
    route!(GET "/runs/{id}/events/stream", "A run's events as Server-Sent Events, live, until the run ends", stream::run_events, sse = true, query = &[AFTER]),
    route!(POST "/runs/{id}/cancel", "Cancel a run (from any process): running steps stop, nothing new starts", runs::cancel, query = &[
        ("wait", "seconds to wait for the run to stop (default 10, at most 600)"),
    ]),
    route!(POST "/runs/{id}/resume", "Resume an interrupted run: finished steps keep their outcome", runs::resume, ok = 202),
    route!(POST "/runs/{id}/retry", "Retry a failed or cancelled run as a new run that keeps its completed steps", runs::retry, ok = 202, query = &[
        ("from", "a step to run again, with what depends on it, even if it completed"),
    ]),
    route!(GET "/schedules", "The scheduled workflows: schedule, catch-up policy, pause, next tick, counts, last fired and missed ticks; and who fires them", schedules::list),
    route!(POST "/schedules/{name}/pause", "Pause a schedule in every process: no tick fires until it is resumed", schedules::pause),
    route!(POST "/schedules/{name}/resume", "Resume a paused schedule: its next tick fires", schedules::resume),
    route!(POST "/schedules/{name}/trigger", "Run a scheduled workflow now, with ${schedule.time} set to now (paused or not)", schedules::trigger, ok = 202),
    route!(GET "/templates", "The project templates", projects::templates),
    route!(GET "/projects", "The projects, with a summary", projects::list),
    route!(POST "/projects", "Create a project from a template", projects::create, ok = 201, body = Some("ProjectCreate")),
    route!(GET "/projects/{name}", "A project's status, milestones and metrics", projects::get),
    route!(POST "/projects/{name}/milestones", "Record a milestone of a project", projects::milestone, body = Some("Milestone")),
    route!(POST "/projects/{name}/metrics", "Set metrics of a project (each value replaces the old one)", projects::metrics, body = Some("Metrics")),
    route!(POST "/projects/{name}/runs", "Start a run of one of a project's workflows, in the project", projects::run, ok = 202, body = Some("ProjectRun")),
];

/// The path parameters of a route's path, in order.
fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

fn param_doc(name: &str) -> &'static str {
    match name {
        "id" => "a run's id, or a unique prefix of it (for sessions: the session's id)",
        "name" => "a workflow's or project's name (letters, digits, `_`, `-`, `.`)",
        "step" => "a step's name",
        _ => "",
    }
}

/// The OpenAPI 3.1 document of [`ROUTES`].
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let mut params: Vec<Value> = path_params(r.path)
            .map(|p| {
                json!({"name": p, "in": "path", "required": true,
                       "description": param_doc(p), "schema": {"type": "string"}})
            })
            .collect();
        params.extend(r.query.iter().map(|(n, d)| {
            json!({"name": n, "in": "query", "required": false, "description": d,
                   "schema": {"type": "string"}})
        }));
        let content = if r.sse {
            json!({"text/event-stream": {"schema": {"type": "string"}}})
        } else if r.text {
            json!({"text/plain": {"schema": {"type": "string"}}})
        } else {
            json!({"application/json": {"schema": {"type": "object"}}})
        };
        let mut op = json!({
            "summary": r.summary,
            "operationId": operation_id(r),
            "parameters": params,
            "responses": {
                r.ok.to_string(): {"description": "success", "content": content},
                "default": {"description": "an error", "content": {"application/json":
                    {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}},
            },
        });
        if let Some(b) = r.body {
            op["requestBody"] = json!({"required": true, "content": {"application/json":
                {"schema": {"$ref": format!("#/components/schemas/{b}")}}}});
        }
        if !r.auth {
            op["security"] = json!([]);
        }
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method.to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "orch", "version": env!("CARGO_PKG_VERSION"),
                 "description": "orch's HTTP API (docs/server.md)"},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "the token in $ORCH_HOME/server-token"}},
            "schemas": schemas(),
        },
    })
}

/// `GET /runs/{id}/steps` -> `get_runs_id_steps`.
fn operation_id(r: &Route) -> String {
    let mut s = r.method.to_ascii_lowercase();
    for part in r.path.split(['/', '.']).filter(|p| !p.is_empty()) {
        s.push('_');
        s.push_str(part.trim_start_matches('{').trim_end_matches('}'));
    }
    s
}

fn schemas() -> Value {
    let run_options = json!({
        "params": {"type": "object", "description": "parameter values"},
        "mode": {"enum": ["sequential", "parallel", "resource_aware"]},
        "max_parallel": {"type": "integer", "minimum": 1},
        "timeout": {"type": ["number", "string"], "description": "a limit on the whole run: seconds, or \"30s\", \"5m\""},
        "no_cache": {"type": "boolean"},
        "wait": {"type": "boolean", "description": "answer when the run has ended (default: at once, 202)"},
    });
    let mut submission = run_options.clone();
    if let Value::Object(m) = &mut submission {
        m.insert(
            "workflow".into(),
            json!({"type": "string", "description": "a workflow's name"}),
        );
        m.insert("definition".into(), json!({"type": ["string", "object"], "description": "a definition (text, or a JSON object) instead of a name"}));
        m.insert("format".into(), json!({"enum": ["yaml", "json", "toml"], "description": "the definition text's format (default: yaml, which also reads JSON)"}));
        m.insert("detach".into(), json!({"type": "boolean", "description": "submit for `orch worker`s instead of running in the server"}));
    }
    let mut project_run = run_options;
    if let Value::Object(m) = &mut project_run {
        m.insert("workflow".into(), json!({"type": "string"}));
    }
    json!({
        "ErrorResponse": {"type": "object", "required": ["success", "error", "error_type", "error_code", "details", "suggestions"],
            "properties": {"success": {"const": false}, "error": {"type": "string"}, "error_type": {"type": "string"},
                "error_code": {"type": "string"}, "details": {"type": "object"}, "suggestions": {"type": "array", "items": {"type": "string"}}}},
        "Definition": {"type": "object", "required": ["definition"], "properties": {
            "definition": {"type": ["string", "object"], "description": "the definition: text (YAML, JSON or TOML) or a JSON object"},
            "format": {"enum": ["yaml", "json", "toml"]}}},
        "RunSubmission": {"type": "object", "properties": submission},
        "ProjectRun": {"type": "object", "required": ["workflow"], "properties": project_run},
        "SessionOptions": {"type": "object", "properties": {
            "user_id": {"type": "string"}, "mode": {"enum": ["sequential", "parallel", "resource_aware"]},
            "max_parallel_tasks": {"type": "integer"}, "max_parallel_workflows": {"type": "integer"},
            "timeout_seconds": {"type": "integer"}, "resource_requirements": {"type": "object"}, "metadata": {"type": "object"}}},
        "ProjectCreate": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "template": {"type": "string"}, "path": {"type": "string"},
            "description": {"type": "string"}, "author": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}}},
        "Milestone": {"type": "object", "required": ["key"], "properties": {"key": {"type": "string"}, "data": {}}},
        "Metrics": {"type": "object", "description": "metric name -> value"},
    })
}

async fn openapi_doc() -> Json<Value> {
    Json(openapi())
}

/// 404 for a path no route has.
pub(crate) async fn no_route(uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route for {}; GET /openapi.json lists the routes",
        uri.path()
    ))
}

/// 405 for a route asked with a method it does not have.
pub(crate) async fn wrong_method(method: Method, uri: Uri) -> ApiResult<()> {
    let allowed: Vec<&str> = ROUTES
        .iter()
        .filter(|r| matches(r.path, uri.path()))
        .map(|r| r.method)
        .collect();
    let mut e = ApiError::bad_request(format!(
        "{} {} is not a route; this path takes {}",
        method,
        uri.path(),
        allowed.join(", ")
    ));
    e.status = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    Err(e)
}

/// Whether a concrete path fits a route's path template.
fn matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(a, b)| a == b || (a.starts_with('{') && !b.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_has_every_route_and_nothing_else() {
        let doc = openapi();
        let paths = doc["paths"].as_object().expect("paths");
        let mut documented = Vec::new();
        for (p, ops) in paths {
            for m in ops.as_object().expect("ops").keys() {
                documented.push(format!("{} {p}", m.to_ascii_uppercase()));
            }
        }
        let mut table: Vec<String> = ROUTES
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        documented.sort();
        table.sort();
        assert_eq!(documented, table);
        // No route twice.
        table.dedup();
        assert_eq!(table.len(), ROUTES.len());
        // Every body schema named exists.
        for r in ROUTES {
            if let Some(b) = r.body {
                assert!(doc["components"]["schemas"].get(b).is_some(), "{b}");
            }
        }
    }

    #[test]
    fn templates_match_paths() {
        assert!(matches("/runs/{id}/steps", "/runs/abc/steps"));
        assert!(!matches("/runs/{id}/steps", "/runs//steps"));
        assert!(!matches("/runs/{id}", "/runs/abc/steps"));
    }
}
