//! The JSON Schema of the workflow format (`orch schema`), derived from types that describe what a definition file may hold.
//!
//! The decoder reads definitions from a position-keeping tree, not through
//! serde, so the schema is derived (schemars) from the types below, which
//! mirror the decoder's fields: a test checks that each type has exactly the
//! fields the decoder knows (`decode/fields.rs`), so the two cannot drift.
//! Their doc comments become the schema's descriptions, which editors show.
//! Enumerations come from the model's own lists (`ALL`), and, given an
//! [`ActionCatalog`], each declared action adds the schema of its
//! `parameters` (an `if` on `module` and `action`, `then` its parameters).

use crate::actions::{ActionCatalog, ActionSpec, ParamType};
use crate::enums::{BackoffKind, ConditionOp, ResourceType, RunIf, TaskPriority, WorkflowStatus};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Map, Value, json};

/// The `$id` of the schema (where `orch schema` says it lives).
pub const SCHEMA_ID: &str = "https://orch.invalid/schema/workflow.json";

/// A workflow definition: a named DAG of steps (YAML, JSON or TOML).
#[derive(JsonSchema)]
#[schemars(title = "orch workflow definition", deny_unknown_fields)]
#[allow(dead_code)]
struct WorkflowFile {
    /// Unique name: ASCII letters, digits, `_`, `-` and `.` (not first, never `..`).
    #[schemars(schema_with = "workflow_name")]
    name: String,
    /// What the workflow does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "plain::<String>")]
    description: Option<String>,
    /// The definition's version, free text (a number is read as text). Default "1.0".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "string_or_number")]
    version: Option<String>,
    /// Declared inputs with their defaults (`${params.NAME}` may only name these);
    /// a `null` default must be given at run time (`-p NAME=VALUE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "parameters")]
    parameters: Option<Map<String, Value>>,
    /// Environment variables that `${env.NAME}` may read (an allow-list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "env_names")]
    env: Option<Vec<String>>,
    /// At most `limit` runs whose keys render the same run at once (the slots
    /// are held in the store, across processes); `on_conflict` says what a
    /// run does when they are all taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "plain::<ConcurrencyFile>")]
    concurrency: Option<ConcurrencyFile>,
    /// Secrets by name (an environment variable name, not `ORCH_...`), each
    /// read when a run starts from an environment variable or a file of mode
    /// 0600; steps get them with `secrets: [NAME]`, as environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "secrets_section")]
    secrets: Option<Map<String, Value>>,
    /// Values every step gets unless it sets its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "plain::<Defaults>")]
    defaults: Option<Defaults>,
    /// The steps, in definition order (at least one).
    #[schemars(length(min = 1))]
    steps: Vec<Step>,
    /// Steps run after the main steps when one of them failed or the run
    /// timed out (each waits for every main step; trigger rule `one_failed`
    /// unless it sets one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "hook_steps")]
    on_failure: Option<Vec<Step>>,
    /// Steps run last, whatever happened, also after a cancel or a run
    /// timeout (within `cancel_grace`); each waits for every main and
    /// `on_failure` step (trigger rule `all_done` unless it sets one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "hook_steps")]
    finally: Option<Vec<Step>>,
    /// How long `finally` steps (and steps whose trigger rule runs after a
    /// failure) may still run once the run was cancelled or timed out
    /// (default 30 s): seconds, or text like "10s", "2m".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "duration")]
    cancel_grace: Option<String>,
    /// The workflow's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "workflow_status")]
    status: Option<String>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "plain::<Map<String, Value>>")]
    metadata: Option<Map<String, Value>>,
    /// When the workflow starts by itself, in `orch serve` and `orch worker` (docs/schedules.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "plain::<super::schedule::ScheduleFile>")]
    schedule: Option<super::schedule::ScheduleFile>,
}

/// Defaults for steps; a step's own value wins.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct Defaults {
    /// Longest time one attempt may take: seconds, or text like "30s", "5m", "1h30m"; `null`: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "timeout")]
    timeout: Option<String>,
    /// How many times a retryable failure is retried (0 = run once).
    #[schemars(range(min = 0))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "plain::<u32>")]
    max_retries: Option<u32>,
    /// How long to wait between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "plain::<Retry>")]
    retry: Option<Retry>,
    /// Scheduling priority among ready steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "priority")]
    priority: Option<String>,
    /// Whether results may be served from the cache, and how (`true`, or
    /// `{files, ttl}` as a step's `cache`), for steps that do not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "step_cache")]
    cache: Option<Value>,
    /// What a step needs while it runs (in `resource_aware` mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "resources")]
    resources: Option<Value>,
}

/// One step: an action (`module` + `action`) with its parameters.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct Step {
    /// Unique within the workflow: ASCII letters, digits, `_` and `-` (not params, run, project or env).
    #[schemars(schema_with = "step_name")]
    name: String,
    /// The module providing the action (core, shell, fs, code, chart, report, data, workflow,
    /// or one served by a program with --module NAME=PROGRAM).
    #[schemars(schema_with = "identifier")]
    module: String,
    /// The action within the module (exec, noop, ...).
    #[schemars(schema_with = "identifier")]
    action: String,
    /// What the step does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "plain::<String>")]
    description: Option<String>,
    /// The action's parameters; strings may hold `${...}` references
    /// (`${params.NAME}`, `${STEP.result...}`, `${STEP.status}`, `${run.id}`,
    /// `${project.path}`, `${schedule.time}`, `${env.NAME}`, and in a fan-out
    /// step `${item}` and `${matrix.KEY}`; `$${` for a literal `${`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "nullable_object")]
    parameters: Option<Map<String, Value>>,
    /// Names of the steps this one waits for (a `${STEP.result}` reference adds its step too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "dependencies")]
    dependencies: Option<Vec<String>>,
    /// When the step runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "conditions")]
    conditions: Option<Conditions>,
    /// Where the step runs: main (the default), on_failure or finally (the
    /// same as listing it under `on_failure:` or `finally:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "phase")]
    phase: Option<String>,
    /// Longest time one attempt may take: seconds, or text like "30s", "5m", "1h30m"; `null`: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "timeout")]
    timeout: Option<String>,
    /// The original format's persisted retry counter; accepted and ignored.
    #[schemars(range(min = 0))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "plain::<u32>")]
    retry_count: Option<u32>,
    /// How many times a retryable failure is retried (0 = run once).
    #[schemars(range(min = 0))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "plain::<u32>")]
    max_retries: Option<u32>,
    /// How long to wait between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "plain::<Retry>")]
    retry: Option<Retry>,
    /// Scheduling priority among ready steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "priority")]
    priority: Option<String>,
    /// What the step needs while it runs (in `resource_aware` mode), e.g. `{cpu: {cores: 1}, memory: {gb: 0.5}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "resources")]
    resources: Option<Value>,
    /// Whether the step's result may be served from the cache: `true`, or
    /// `{files: [GLOB...], ttl: DURATION}` to key it on the contents of files
    /// (relative to the work directory) and let entries expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "step_cache")]
    cache: Option<Value>,
    /// Declared secrets the step's process gets as environment variables of the same names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "step_secrets")]
    secrets: Option<Vec<String>>,
    /// Run the step once per item: a list, or one reference to a list
    /// ("${STEP.result.files}", "${params.NAME}"); `${item}` in the
    /// parameters is the item. Each item is a step of its own (STEP[0],
    /// STEP[1], ...); the step's result is the list of their results, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "for_each")]
    for_each: Option<Value>,
    /// Run the step once per combination of named lists (the cross
    /// product, first key outermost); `${matrix.KEY}` in the parameters is
    /// the combination's value of KEY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "matrix")]
    matrix: Option<Map<String, Value>>,
}

/// A workflow's concurrency key.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct ConcurrencyFile {
    /// Runs whose keys render the same share the slots, e.g. "deploy-${params.env}"
    /// (only `${params.NAME}` references).
    #[schemars(length(min = 1, max = 1024))]
    key: String,
    /// How many runs of the key may run at once (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    limit: Option<u32>,
    /// What a run does when every slot is taken: wait (`queue`, the
    /// default), stop the runs holding them (`cancel_running`), or run no
    /// step (`skip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "on_conflict")]
    on_conflict: Option<String>,
}

fn on_conflict(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"enum": names(super::OnConflict::ALL.iter().map(|p| p.as_str()))})
}

/// Where a secret's value is read: exactly one of `env` and `file`.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct SecretSource {
    /// The environment variable holding the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "env_name")]
    env: Option<String>,
    /// A file holding the value (mode 0600 or stricter; relative to the work
    /// directory; one trailing newline is dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "plain::<String>")]
    file: Option<String>,
}

/// A step's cache options.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct CacheOptions {
    /// Globs relative to the work directory whose files' contents are part of the cache key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "plain::<Vec<String>>")]
    files: Option<Vec<String>>,
    /// How long an entry serves after it was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "timeout")]
    ttl: Option<String>,
}

/// How the delay between attempts grows.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct Retry {
    /// How delays grow (default exponential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "backoff")]
    backoff: Option<String>,
    /// Delay before the first retry (default 1 s): seconds, or text like "500ms", "2s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "duration")]
    initial_delay: Option<String>,
    /// The cap on any delay (default 60 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "duration")]
    max_delay: Option<String>,
    /// Growth factor of `exponential` backoff, 1 to 100 (default 2).
    #[schemars(range(min = 1, max = 100))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "plain::<f64>")]
    multiplier: Option<f64>,
    /// Whether delays are randomized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "plain::<bool>")]
    jitter: Option<bool>,
}

/// When a step runs: a trigger rule and an optional test on a value.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct Conditions {
    /// Which outcomes of the dependencies let the step run (default success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "run_if")]
    run_if: Option<String>,
    /// A comparison; when false the step is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "plain::<When>")]
    when: Option<When>,
}

/// A comparison `ref op value`, e.g. `${analyze.result.files} gt 0`.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct When {
    /// Exactly one `${...}` reference, such as "${build.result.exit_code}".
    #[serde(rename = "ref")]
    #[schemars(schema_with = "single_reference")]
    reference: String,
    /// The comparison (default truthy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "condition_op")]
    op: Option<String>,
    /// The value compared with (not needed by `exists` and `truthy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "plain::<Value>")]
    value: Option<Value>,
}

/// The schema of `T` for a field that may be left out but is never `null`.
fn plain<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

fn names(all: impl IntoIterator<Item = &'static str>) -> Vec<Value> {
    all.into_iter().map(Value::from).collect()
}

fn workflow_name(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9_.-]*$"})
}

fn step_name(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": "^[A-Za-z0-9_-]+$",
        "not": {"enum": names(crate::definition::names::RESERVED_STEP_NAMES.iter().copied())},
    })
}

fn identifier(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "pattern": "^[A-Za-z0-9_-]+$"})
}

fn string_or_number(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": ["string", "number"]})
}

fn parameters(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "object", "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_-]*$"}})
}

fn env_names(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}})
}

fn env_name(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"})
}

fn secrets_section(generator: &mut SchemaGenerator) -> Schema {
    let source = generator.subschema_for::<SecretSource>();
    json_schema!({
        "type": ["object", "null"],
        "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$", "not": {"pattern": "^ORCH_"}},
        "additionalProperties": {"allOf": [source, {"minProperties": 1, "maxProperties": 1}]},
    })
}

fn step_secrets(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": ["array", "null"], "items": {"type": "string"}, "uniqueItems": true})
}

fn step_cache(generator: &mut SchemaGenerator) -> Schema {
    let options = generator.subschema_for::<CacheOptions>();
    json_schema!({"anyOf": [{"type": "boolean"}, options]})
}

fn nullable_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": ["object", "null"]})
}

fn for_each(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"anyOf": [{"type": "array"}, {"type": "string", "pattern": "^\\$\\{[^}]+\\}$"}]})
}

fn matrix(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_-]*$"},
        "additionalProperties": {"type": "array"}
    })
}

fn dependencies(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": ["array", "null"], "items": {"type": "string"}})
}

fn conditions(generator: &mut SchemaGenerator) -> Schema {
    let inner = generator.subschema_for::<Conditions>();
    json_schema!({"anyOf": [inner, {"type": "null"}]})
}

/// A duration as the decoder reads it: seconds, or amounts with units in decreasing order.
const DURATION_PATTERN: &str = r"^\s*(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|(([0-9]+\.?[0-9]*|\.[0-9]+)(d|h|ms|m|s))+)\s*$";

fn duration(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            {"type": "number", "minimum": 0},
            {"type": "string", "pattern": DURATION_PATTERN},
        ]
    })
}

fn timeout(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            {"type": "number", "exclusiveMinimum": 0},
            {"type": "string", "pattern": DURATION_PATTERN},
            {"type": "null"},
        ]
    })
}

fn priority(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            {"enum": names(TaskPriority::ALL.iter().map(|p| p.as_str()))},
            {"type": "integer", "minimum": 1, "maximum": 4},
        ]
    })
}

fn resources(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "propertyNames": {"enum": names(ResourceType::ALL.iter().map(|r| r.as_str()))},
        "additionalProperties": {
            "type": "object",
            "propertyNames": {"pattern": "^[a-z0-9_]{1,64}$"},
            "additionalProperties": {"type": "number", "minimum": 0},
        },
    })
}

fn workflow_status(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"enum": names(WorkflowStatus::ALL.iter().map(|s| s.as_str()))})
}

fn backoff(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"enum": names(BackoffKind::ALL.iter().map(|b| b.as_str()))})
}

fn run_if(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"enum": names(RunIf::ALL.iter().map(|r| r.as_str()))})
}

fn phase(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"enum": names(crate::enums::Phase::ALL.iter().map(|p| p.as_str()))})
}

fn hook_steps(generator: &mut SchemaGenerator) -> Schema {
    let step = generator.subschema_for::<Step>();
    json_schema!({"anyOf": [{"type": "array", "items": step}, {"type": "null"}]})
}

fn condition_op(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"enum": names(ConditionOp::ALL.iter().map(|o| o.as_str()))})
}

fn single_reference(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "pattern": r"^\$\{[^}]+\}$"})
}

/// A string that is exactly one `${...}` reference: its type is known only
/// when the run resolves it, so any parameter accepts one.
const REFERENCE_PATTERN: &str = r"^\$\{[^}]+\}$";

/// The schema of one declared parameter.
fn param_schema(ty: ParamType, required: bool, description: &str) -> Value {
    let mut types: Vec<Value> = names(ty.json_types());
    if !required {
        types.push("null".into());
    }
    let mut s = if ty == ParamType::ANY {
        json!({})
    } else if ty.contains(ParamType::STRING) {
        json!({"type": types})
    } else {
        json!({"anyOf": [{"type": types}, {"type": "string", "pattern": REFERENCE_PATTERN}]})
    };
    s["description"] = description.into();
    s
}

/// The `if`/`then` pair that gives `module.action`'s parameters their schema.
fn action_rule(module: &str, action: &str, spec: &ActionSpec) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for p in spec.params {
        props.insert(
            p.name.to_owned(),
            param_schema(p.ty, p.required, p.description),
        );
        if p.required {
            required.push(Value::from(p.name));
        }
    }
    let mut params = json!({
        "type": ["object", "null"],
        "description": spec.description,
        "properties": props,
    });
    if !spec.open {
        params["additionalProperties"] = false.into();
    }
    let mut then = json!({"properties": {"parameters": params}});
    if !required.is_empty() {
        params_required(&mut then, required);
    }
    json!({
        "if": {
            "properties": {"module": {"const": module}, "action": {"const": action}},
            "required": ["module", "action"],
        },
        "then": then,
    })
}

/// A step whose action requires parameters must have them, as an object holding the required ones.
fn params_required(then: &mut Value, required: Vec<Value>) {
    then["required"] = json!(["parameters"]);
    then["properties"]["parameters"]["type"] = "object".into();
    then["properties"]["parameters"]["required"] = Value::Array(required);
}

/// The JSON Schema (draft 07) of the workflow format. With a catalog, each
/// declared action's parameters are part of it.
pub fn workflow_schema(actions: Option<&ActionCatalog>) -> Value {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let schema = generator.into_root_schema_for::<WorkflowFile>();
    let mut v = schema.to_value();
    if let Value::Object(root) = &mut v {
        root.insert("$id".into(), SCHEMA_ID.into());
    }
    if let Some(catalog) = actions {
        let rules: Vec<Value> = catalog
            .actions()
            .filter_map(|(m, a, spec)| spec.map(|s| action_rule(m, a, s)))
            .collect();
        if let Some(step) = v.pointer_mut("/definitions/Step") {
            step["allOf"] = Value::Array(rules);
        }
    }
    v
}

#[cfg(test)]
mod tests;
