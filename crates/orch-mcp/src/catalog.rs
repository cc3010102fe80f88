//! The tools: each one's name, description and arguments (the documented
//! inputs of the original module's `MCP_TOOL_SPECIFICATION.md`, with the
//! names its code used accepted too).

use crate::args::{Field, Kind, Ty, opt, req};
use serde_json::{Value, json};

const MODES: &[&str] = &["sequential", "parallel", "resource_aware"];
const PRIORITIES: &[&str] = &["low", "normal", "high", "critical"];
const OPERATIONS: &[&str] = &["status", "update", "milestone", "archive"];

fn steps_schema() -> Value {
    json!({
        "type": "array",
        "description": "The steps, as in a workflow file (docs/workflow-format.md).",
        "items": {
            "type": "object",
            "required": ["name", "module", "action"],
            "properties": {
                "name": {"type": "string"},
                "module": {"type": "string", "description": "e.g. core, shell, fs, code, chart, report"},
                "action": {"type": "string", "description": "e.g. core.set, shell.exec"},
                "parameters": {"type": "object"},
                "dependencies": {"type": "array", "items": {"type": "string"}},
                "timeout": {"description": "seconds, or a duration such as \"30s\""},
                "max_retries": {"type": "integer", "minimum": 0},
                "priority": {"type": "string", "enum": PRIORITIES},
                "conditions": {"type": "object"},
                "resources": {"type": "object"},
                "cache": {"type": "boolean"}
            }
        }
    })
}

fn definition_schema() -> Value {
    json!({
        "type": "object",
        "description": "{\"steps\": [...], \"dependencies\": {step: [steps it waits for]}}; other keys as in a workflow file.",
        "required": ["steps"],
        "properties": {
            "steps": steps_schema(),
            "dependencies": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
            "parallel_groups": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
            "description": {"type": "string"},
            "parameters": {"type": "object"}
        }
    })
}

const WAIT: Field = opt(
    "wait",
    Ty::Bool,
    "Wait for the end (default true, at most `wait_seconds`); false returns the run's id at once.",
);
const WAIT_SECONDS: Field = opt(
    "wait_seconds",
    Ty::NonNegative,
    "Longest the call waits for the end (default 30); a run still going then is returned with status `running` and read later with get_run.",
);
const RESOURCES: Field = opt(
    "resource_requirements",
    Ty::Object,
    "Resources held while it runs, e.g. {\"cpu\": {\"cores\": 2}, \"memory\": {\"gb\": 4}}.",
);

/// One tool.
#[derive(Debug)]
pub(crate) struct ToolSpec {
    /// Its name.
    pub(crate) name: &'static str,
    /// What it does, for the client.
    pub(crate) description: &'static str,
    /// Its arguments.
    pub(crate) fields: &'static [Field],
    /// Whether it changes nothing.
    pub(crate) read_only: bool,
}

/// Every tool, in the order `tools/list` gives them.
pub(crate) const TOOLS: &[ToolSpec] = &[
    ToolSpec {
        name: "execute_workflow",
        description: "Run a workflow by name (one created with create_workflow, one of the workflows directory, or a template's). Waits for its end up to wait_seconds; else returns its run_id and status `running` (read it with get_run).",
        fields: &[
            req("workflow_name", Ty::Str, "The workflow to run.").or("name"),
            opt(
                "parameters",
                Ty::Object,
                "Parameter values (override the workflow's defaults).",
            ),
            opt(
                "session_id",
                Ty::Str,
                "Run in this session (from the engine); default: a session of its own.",
            ),
            opt(
                "mode",
                Ty::Enum(MODES),
                "Execution mode (default parallel).",
            ),
            opt(
                "timeout_seconds",
                Ty::Positive,
                "Limit on the whole run; it is cancelled when it passes.",
            ),
            RESOURCES,
            opt(
                "priority",
                Ty::Enum(PRIORITIES),
                "Accepted for the original's callers and echoed; each run has its own scheduler, so it orders nothing (step priorities come from the definition).",
            ),
            opt(
                "max_parallel",
                Ty::Count,
                "Most steps at once (default: the engine's max_workers).",
            ),
            WAIT,
            WAIT_SECONDS,
        ],
        read_only: false,
    },
    ToolSpec {
        name: "create_workflow",
        description: "Create a workflow from steps, checked as a workflow file is (every problem is reported), and save it in the workflows directory so that execute_workflow and list_workflows find it.",
        fields: &[
            req("name", Ty::Str, "The workflow's name.").or("workflow_name"),
            req("steps", Ty::Custom(steps_schema, Kind::Array), "The steps."),
            opt("description", Ty::Str, "What it does."),
            opt(
                "parameters",
                Ty::Object,
                "Parameters with their defaults, referenced as ${params.NAME}.",
            ),
            opt(
                "overwrite",
                Ty::Bool,
                "Replace a saved workflow of that name (default false).",
            ),
        ],
        read_only: false,
    },
    ToolSpec {
        name: "list_workflows",
        description: "List the workflows: name, description, steps, where defined; and definitions that do not load, with why.",
        fields: &[],
        read_only: true,
    },
    ToolSpec {
        name: "create_project",
        description: "Create a project from a template (ai_analysis, data_pipeline, web_application, or `custom` for an empty one); optionally run one of its workflows.",
        fields: &[
            req(
                "project_name",
                Ty::Str,
                "The project's name (letters, digits, _, -, .).",
            )
            .or("name"),
            opt(
                "template_name",
                Ty::Str,
                "The template (default ai_analysis).",
            )
            .or("template"),
            opt("description", Ty::Str, "What the project is."),
            opt(
                "project_path",
                Ty::Str,
                "Where to create it (default $ORCH_HOME/projects/NAME); its parent must exist.",
            )
            .or("path"),
            opt("author", Ty::Str, "Who makes it."),
            opt("tags", Ty::StrList, "Tags."),
            opt(
                "config_overrides",
                Ty::Object,
                "Entries set in the project's config after creation.",
            ),
            opt(
                "execute_workflow",
                Ty::Bool,
                "Run the template's first workflow after creation (default false).",
            ),
            opt(
                "workflow_name",
                Ty::Str,
                "Which of its workflows to run (default: the first).",
            ),
            opt(
                "workflow_parameters",
                Ty::Object,
                "Parameter values for that run.",
            ),
            WAIT_SECONDS,
        ],
        read_only: false,
    },
    ToolSpec {
        name: "list_projects",
        description: "List the projects: name, type, status, path, created_at, workflows.",
        fields: &[],
        read_only: true,
    },
    ToolSpec {
        name: "execute_task",
        description: "Run one action on its own (e.g. module core, action set). Waits for its end up to wait_seconds; else returns its task_id and status `running` (read it with get_run).",
        fields: &[
            req("task_name", Ty::Str, "The task's name.").or("name"),
            req(
                "module",
                Ty::Str,
                "The action's module, e.g. core or shell.",
            ),
            req("action", Ty::Str, "The action, e.g. set or exec."),
            opt("parameters", Ty::Object, "The action's parameters."),
            opt(
                "dependencies",
                Ty::StrList,
                "Ids of tasks run earlier by execute_task: each must have completed (a running one is waited for).",
            ),
            opt(
                "priority",
                Ty::Enum(PRIORITIES),
                "The task's priority (default normal).",
            ),
            opt("timeout_seconds", Ty::Positive, "Limit on each attempt."),
            opt(
                "retry_count",
                Ty::Count,
                "Retries after a retryable failure (default 0).",
            )
            .or("max_retries"),
            RESOURCES,
            opt(
                "session_id",
                Ty::Str,
                "A session of the engine it belongs to (checked to be active).",
            ),
            WAIT,
            WAIT_SECONDS,
        ],
        read_only: false,
    },
    ToolSpec {
        name: "get_system_status",
        description: "The system's status: overall status, each component's figures, performance, issues and recommendations.",
        fields: &[
            opt(
                "include_detailed_metrics",
                Ty::Bool,
                "Include performance_metrics (default true).",
            ),
            opt(
                "include_resource_health",
                Ty::Bool,
                "Include each resource's health (default true).",
            ),
            opt(
                "include_active_sessions",
                Ty::Bool,
                "Include the active sessions (default false).",
            ),
            opt(
                "time_range_hours",
                Ty::Positive,
                "Count the workflow runs of this many last hours in performance_metrics.recent_runs (default 24).",
            ),
        ],
        read_only: true,
    },
    ToolSpec {
        name: "get_health_status",
        description: "The health check: overall_status (healthy, degraded, unhealthy), each component's, and the issues.",
        fields: &[],
        read_only: true,
    },
    ToolSpec {
        name: "allocate_resources",
        description: "Allocate resources for a user, all or nothing; with timeout_seconds, wait that long for capacity. Release with release_resources.",
        fields: &[
            req("user_id", Ty::Str, "Who holds them."),
            req(
                "requirements",
                Ty::Object,
                "What, e.g. {\"cpu\": {\"cores\": 2}, \"memory\": {\"gb\": 4}}.",
            ),
            opt(
                "timeout_seconds",
                Ty::Positive,
                "Wait this long for capacity (default: granted now or refused).",
            ),
        ],
        read_only: false,
    },
    ToolSpec {
        name: "release_resources",
        description: "Release a user's allocations (all of them, or those listed).",
        fields: &[
            req("user_id", Ty::Str, "Who holds them."),
            opt(
                "allocation_ids",
                Ty::StrList,
                "Which (default: all of the user's).",
            ),
        ],
        read_only: false,
    },
    ToolSpec {
        name: "create_complex_workflow",
        description: "Run a workflow given as data, {steps, dependencies}; it is not saved. Waits for its end up to wait_seconds; else returns its run_id (read it with get_run).",
        fields: &[
            req("name", Ty::Str, "The workflow's name.").or("workflow_name"),
            req(
                "workflow_definition",
                Ty::Custom(definition_schema, Kind::Object),
                "The definition.",
            ),
            opt(
                "session_id",
                Ty::Str,
                "Run in this session; default: a session of its own.",
            ),
            opt(
                "mode",
                Ty::Enum(MODES),
                "Execution mode (default parallel).",
            ),
            opt("timeout_seconds", Ty::Positive, "Limit on the whole run."),
            WAIT,
            WAIT_SECONDS,
        ],
        read_only: false,
    },
    ToolSpec {
        name: "manage_project",
        description: "A project's status, or change it: update (status, description, version, author, tags, config, metrics), milestone (name, data), archive (output).",
        fields: &[
            req("project_name", Ty::Str, "The project.").or("name"),
            req("operation", Ty::Enum(OPERATIONS), "What to do."),
            opt(
                "parameters",
                Ty::Object,
                "update: {status?, description?, version?, author?, tags?, config?, metrics?}; milestone: {name, data?}; archive: {output?}.",
            ),
        ],
        read_only: false,
    },
    ToolSpec {
        name: "get_run",
        description: "A run's (or an execute_task task's) state and, once it ended, its report: status, steps completed, results, errors. Finds runs started by this server and runs recorded in the store.",
        fields: &[
            req(
                "run_id",
                Ty::Str,
                "The run_id (or task_id) a tool returned.",
            ),
            opt(
                "wait_seconds",
                Ty::NonNegative,
                "Wait up to this long for it to end (default 0).",
            ),
        ],
        read_only: true,
    },
    ToolSpec {
        name: "cancel_run",
        description: "Cancel a run (or task) started by this server: running steps are stopped, nothing new starts.",
        fields: &[req("run_id", Ty::Str, "The run_id (or task_id).")],
        read_only: false,
    },
];

/// The tool of that name.
pub(crate) fn find(name: &str) -> Option<&'static ToolSpec> {
    TOOLS.iter().find(|t| t.name == name)
}
