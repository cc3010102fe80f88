//! Semantic validation of a decoded workflow: names, dependencies, references, cycles, levels.

use super::Workflow;
use super::decode::SourceMap;
use super::names::{NameKind, check_name, display_snippet};
use crate::diagnostic::{DiagnosticKind as K, Diagnostics};
use crate::duration::check_timeout;
use crate::graph::{DepGraph, Levels, to_dot, to_mermaid};
use crate::limits::Limits;
use crate::node::Pos;
use crate::reference::{
    Reference, is_source_parameter, parse_template, parse_template_partial, source_reference_error,
};
use serde_json::Value;

/// A workflow that passed validation, with its dependency graph (declared and
/// implicit dependencies, by step index) and its execution levels.
#[derive(Debug, Clone)]
pub struct ValidWorkflow {
    workflow: Workflow,
    graph: DepGraph,
    levels: Levels,
}

impl ValidWorkflow {
    /// The workflow.
    pub fn workflow(&self) -> &Workflow {
        &self.workflow
    }

    /// The workflow, giving up the graph.
    pub fn into_workflow(self) -> Workflow {
        self.workflow
    }

    /// The effective dependency graph: node `i` is `workflow().steps[i]`.
    pub fn graph(&self) -> &DepGraph {
        &self.graph
    }

    /// The execution levels (Kahn; definition order within a level).
    pub fn levels(&self) -> &Levels {
        &self.levels
    }

    /// The execution levels as step names (seed: `get_execution_order`).
    pub fn execution_order(&self) -> Vec<Vec<String>> {
        self.levels
            .iter()
            .map(|level| {
                level
                    .iter()
                    .map(|&i| self.workflow.steps[i as usize].name.to_string())
                    .collect()
            })
            .collect()
    }

    /// One longest chain of dependent steps, first step first.
    pub fn longest_path(&self) -> Vec<&str> {
        self.graph
            .longest_path(&self.levels)
            .into_iter()
            .map(|i| self.workflow.steps[i as usize].name.as_str())
            .collect()
    }

    fn names_and_labels(&self) -> (Vec<&str>, Vec<String>) {
        let names = self
            .workflow
            .steps
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        let labels = self
            .workflow
            .steps
            .iter()
            .map(|s| format!("{}.{}", s.module, s.action))
            .collect();
        (names, labels)
    }

    /// The graph as Mermaid flowchart text.
    pub fn to_mermaid(&self) -> String {
        let (names, labels) = self.names_and_labels();
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        to_mermaid(&self.graph, &names, &labels)
    }

    /// The graph as Graphviz DOT text.
    pub fn to_dot(&self) -> String {
        let (names, labels) = self.names_and_labels();
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        to_dot(&self.workflow.name, &self.graph, &names, &labels)
    }
}

/// Validates a workflow built in code (positions unknown; messages carry paths).
///
/// # Errors
/// Every problem found.
pub fn validate(workflow: Workflow, limits: &Limits) -> Result<ValidWorkflow, Diagnostics> {
    validate_with_sources(workflow, &SourceMap::default(), limits, None)
}

/// Validates a decoded workflow, pointing problems at their source positions.
///
/// Checks names (charset, length, duplicates), dependencies (unknown, self),
/// every `${...}` reference in parameters and `when` conditions (syntax, known
/// step, declared parameter, allowed environment variable; none at all in
/// program source such as `shell.script`'s `script`, see
/// [`SOURCE_PARAMETERS`](crate::reference::SOURCE_PARAMETERS)), positive
/// timeouts, cycles, and computes execution levels. A reference to a step
/// adds an implicit dependency.
///
/// # Errors
/// Every problem found, sorted by position.
pub fn validate_with_sources(
    workflow: Workflow,
    map: &SourceMap,
    limits: &Limits,
    source: Option<&str>,
) -> Result<ValidWorkflow, Diagnostics> {
    validate_into(
        workflow,
        map,
        limits,
        Diagnostics::new(source.map(str::to_owned)),
    )
}

/// Validates, adding to the problems decoding already found (so that one call
/// reports decoding and semantic problems together). Fields that decoding
/// could not read are left empty and not reported a second time.
pub(crate) fn validate_into(
    mut workflow: Workflow,
    map: &SourceMap,
    limits: &Limits,
    mut d: Diagnostics,
) -> Result<ValidWorkflow, Diagnostics> {
    let partial = !d.is_empty();
    // Items made by an earlier validation are made again below.
    workflow
        .steps
        .truncate(super::fanout::first_item(&workflow.steps));
    if partial && workflow.name.is_empty() {
        // Already reported as missing or malformed.
    } else if let Err(m) = check_name(NameKind::Workflow, &workflow.name, limits) {
        d.push(K::Name, "name", map.top_pos("name"), m);
    }
    if workflow.steps.len() > limits.max_steps {
        d.push(
            K::Limit,
            "steps",
            Pos::UNKNOWN,
            format!(
                "{} steps exceed the limit of {} (limit max_steps)",
                workflow.steps.len(),
                limits.max_steps
            ),
        );
        return Err(d);
    }
    for name in workflow.parameters.keys() {
        if let Err(m) = check_name(NameKind::Parameter, name, limits) {
            let path = format!("parameters.{name}");
            let pos = map.top_pos(&path);
            d.push(K::Name, path, pos, m);
        }
    }
    for (i, name) in workflow.env.iter().enumerate() {
        let ok = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && name.len() <= limits.max_name_len;
        if !ok {
            let path = format!("env[{i}]");
            let pos = map.top_pos(&path);
            d.push(
                K::Name,
                path,
                pos,
                format!(
                    "environment variable name {} must match [A-Za-z_][A-Za-z0-9_]*",
                    display_snippet(name)
                ),
            );
        }
    }

    super::secrets::check(&workflow, map, &mut d);
    super::concurrency::check(&workflow, map, &mut d);

    // Timeouts: decoding refuses a zero timeout in a file; a workflow built in
    // code gets the same rule here.
    let zero_default = workflow.defaults.timeout.map(check_timeout);
    if let Some(Err(m)) = &zero_default {
        d.push(
            K::Duration,
            "defaults.timeout",
            map.top_pos("defaults"),
            m.clone(),
        );
    }
    // Steps that only inherited a zero default are not reported a second time.
    let steps_to_check = if matches!(zero_default, Some(Err(_))) {
        &[][..]
    } else {
        &workflow.steps[..]
    };
    for (i, step) in steps_to_check.iter().enumerate() {
        if let Some(Err(m)) = step.timeout.map(check_timeout) {
            d.push(
                K::Duration,
                format!("steps[{i}].timeout"),
                map.step_pos(i),
                m,
            );
        }
    }

    // Names: charset and duplicates.
    let mut index = NameIndex::with_capacity(&workflow.steps);
    for (i, step) in workflow.steps.iter().enumerate() {
        if partial && step.name.is_empty() {
            continue;
        }
        if let Err(m) = check_name(NameKind::Step, &step.name, limits) {
            d.push(K::Name, format!("steps[{i}].name"), map.name_pos(i), m);
            continue;
        }
        if let Err(first) = index.insert(i as u32) {
            let at = map.name_pos(first as usize);
            let where_ = if at.is_known() {
                format!("line {}", at.line)
            } else {
                format!("steps[{first}]")
            };
            d.push(
                K::Duplicate,
                format!("steps[{i}].name"),
                map.name_pos(i),
                format!("duplicate step name `{}`; it is first defined at {where_}; step names must be unique", step.name),
            );
        }
        for (field, value) in [("module", &step.module), ("action", &step.action)] {
            if partial && value.is_empty() {
                continue;
            }
            let ok = !value.is_empty()
                && value.len() <= limits.max_name_len
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                d.push(
                    K::Name,
                    format!("steps[{i}].{field}"),
                    map.module_pos(i),
                    format!(
                        "{field} {} must be ASCII letters, digits, `_` or `-`",
                        display_snippet(value)
                    ),
                );
            }
        }
    }

    // Dependencies, declared and implicit, into a compact graph; literal
    // fan-outs get their items (see `expand.rs`).
    let mut plan = super::expand::Plan::new(&workflow, limits, map, &mut d);
    let small = workflow.steps.len() <= 10_000;
    let mut graph = DepGraph::with_capacity(workflow.steps.len(), map.dep.len());
    let mut deps: Vec<u32> = Vec::new();
    let mut hooks = super::hooks::HookEdges::new(&workflow, map, &mut d);
    for (i, step) in workflow.steps.iter().enumerate() {
        deps.clear();
        for (k, dep) in step.dependencies.iter().enumerate() {
            let path = || format!("steps[{i}].dependencies[{k}]");
            if *dep == step.name {
                d.push(
                    K::SelfDependency,
                    path(),
                    map.dep_pos(i, k),
                    format!(
                        "step `{}` depends on itself; remove this dependency",
                        step.name
                    ),
                );
                continue;
            }
            match index.get(dep) {
                Some(j) => deps.push(j),
                None => {
                    let hint = if small {
                        suggest(dep, &workflow)
                    } else {
                        format!("; remove it or add a step named {}", display_snippet(dep))
                    };
                    d.push(
                        K::UnknownDependency,
                        path(),
                        map.dep_pos(i, k),
                        format!(
                            "dependency {} is not a step of this workflow{hint}",
                            display_snippet(dep)
                        ),
                    );
                }
            }
        }
        let mut refs = RefCheck {
            wf: &workflow,
            index: &index,
            step: i,
            map,
            diags: &mut d,
            deps: &mut deps,
        };
        for (key, value) in &step.parameters {
            if is_source_parameter(&step.module, &step.action, key) {
                // Program source: no reference may be spliced in (issue 10).
                refs.source(value, &format!("parameters.{key}"), key);
            } else {
                refs.value(value, &format!("parameters.{key}"));
            }
        }
        if let Some(when) = &step.conditions.when {
            refs.when_ref(&when.reference);
        }
        if let Some(super::FanOut::Ref(r)) = step.fan_out.as_deref() {
            refs.for_each_ref(r);
        }
        if let Some(h) = &mut hooks {
            h.add(i, &workflow, &graph, &mut deps, map, &mut d);
        }
        deps.sort_unstable();
        deps.dedup();
        plan.node(i as u32, &mut deps);
        graph.push_node(deps.iter().copied());
    }

    let incomplete =
        d.has(K::UnknownDependency) || d.has(K::Name) && index.len() < workflow.steps.len();
    plan.finish(&mut workflow, &mut graph, map, &mut d);
    let levels = if incomplete {
        // The graph is incomplete; a cycle report would only add noise.
        None
    } else {
        match graph.levels() {
            Ok(levels) => Some(levels),
            Err(_) => {
                if let Some(cycle) = graph.find_cycle() {
                    let names: Vec<&str> = cycle
                        .0
                        .iter()
                        .map(|&j| workflow.steps[j as usize].name.as_str())
                        .collect();
                    let first = cycle.0.first().copied().unwrap_or(0) as usize;
                    let mut text = names.join(" -> ");
                    if let Some(n) = names.first() {
                        text.push_str(" -> ");
                        text.push_str(n);
                    }
                    d.push(
                        K::Cycle,
                        format!("steps[{first}].dependencies"),
                        map.step_pos(first),
                        format!("dependency cycle: {text} (each step depends on the next); remove one of these dependencies"),
                    );
                }
                None
            }
        }
    };

    match levels {
        Some(levels) if d.is_empty() => Ok(ValidWorkflow {
            workflow,
            graph,
            levels,
        }),
        _ => {
            d.sort();
            Err(d)
        }
    }
}

/// The `did you mean` (or `remove it`) tail of an unknown dependency's
/// message: the step name closest to `dep` by edit distance, when it is within
/// a third of the longer name (at least 1 edit). Names whose lengths differ by
/// more than 3, or a `dep` of more than 64 bytes, are not compared: they are
/// no typo of each other, and a million steps stay cheap to search.
fn suggest(dep: &str, wf: &Workflow) -> String {
    let best = wf
        .steps
        .iter()
        .filter(|s| dep.len() <= 64 && s.name.len().abs_diff(dep.len()) <= 3)
        .map(|s| (strsim::levenshtein(dep, &s.name), s.name.as_str()))
        .filter(|(dist, name)| *dist <= (name.len().max(dep.len()) / 3).max(1))
        .min_by_key(|(dist, _)| *dist);
    match best {
        Some((_, name)) => format!("; did you mean `{name}`?"),
        None => format!("; remove it or add a step named {}", display_snippet(dep)),
    }
}

/// Step names to step indices. The table holds only the indices (4 bytes
/// each, against 24 for a `&str` key and its index): at a million steps it
/// stays small enough for the cache, which decides how fast names resolve.
struct NameIndex<'a> {
    steps: &'a [super::WorkflowStep],
    table: hashbrown::HashTable<u32>,
}

impl<'a> NameIndex<'a> {
    fn with_capacity(steps: &'a [super::WorkflowStep]) -> Self {
        Self {
            steps,
            table: hashbrown::HashTable::with_capacity(steps.len()),
        }
    }

    fn hash(name: &str) -> u64 {
        use std::hash::BuildHasher as _;
        rustc_hash::FxBuildHasher.hash_one(name)
    }

    fn name(&self, i: u32) -> &str {
        &self.steps[i as usize].name
    }

    /// The index of the step named `name`.
    fn get(&self, name: &str) -> Option<u32> {
        self.table
            .find(Self::hash(name), |&i| self.name(i) == name)
            .copied()
    }

    /// Adds step `i` under its name; if the name is taken, returns the step that has it.
    fn insert(&mut self, i: u32) -> Result<(), u32> {
        let steps = self.steps;
        let name = steps[i as usize].name.as_str();
        match self.table.entry(
            Self::hash(name),
            |&j| steps[j as usize].name == name,
            |&j| Self::hash(&steps[j as usize].name),
        ) {
            hashbrown::hash_table::Entry::Occupied(e) => Err(*e.get()),
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(i);
                Ok(())
            }
        }
    }

    fn len(&self) -> usize {
        self.table.len()
    }
}

struct RefCheck<'a, 'b> {
    wf: &'a Workflow,
    index: &'a NameIndex<'a>,
    step: usize,
    map: &'a SourceMap,
    diags: &'b mut Diagnostics,
    deps: &'b mut Vec<u32>,
}

impl RefCheck<'_, '_> {
    fn value(&mut self, v: &Value, path: &str) {
        match v {
            Value::String(s) if s.contains("${") => self.string(s, path),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.value(item, &format!("{path}[{i}]"));
                }
            }
            Value::Object(m) => {
                for (k, item) in m {
                    self.value(item, &format!("{path}.{k}"));
                }
            }
            _ => {}
        }
    }

    /// A parameter that is program source text (`shell.script`'s `script`):
    /// every `${...}` in it is an error that says how to pass the value instead.
    fn source(&mut self, v: &Value, path: &str, key: &str) {
        match v {
            Value::String(s) => {
                let step = &self.wf.steps[self.step];
                if let Some(msg) = source_reference_error(&step.module, &step.action, key, s) {
                    self.push(K::Reference, path, msg);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.source(item, &format!("{path}[{i}]"), key);
                }
            }
            Value::Object(m) => {
                for (k, item) in m {
                    self.source(item, &format!("{path}.{k}"), key);
                }
            }
            _ => {}
        }
    }

    fn push(&mut self, kind: K, rel: &str, msg: String) {
        let pos = self.map.ref_pos(self.step, rel);
        self.diags
            .push(kind, format!("steps[{}].{rel}", self.step), pos, msg);
    }

    fn string(&mut self, s: &str, path: &str) {
        let fan = self.wf.steps[self.step].fan_out.as_deref();
        let found = super::fanout::scan(s, fan.is_some());
        let masked;
        let s = if found.is_empty() {
            s
        } else {
            for f in &found {
                if let Some(m) = super::fanout::check_ref(f, fan) {
                    self.push(K::Reference, path, m);
                }
            }
            masked = super::fanout::masked(s, &found);
            &masked
        };
        let (template, errors) = parse_template_partial(s);
        for e in errors {
            let at = s
                .get(e.span.start..e.span.end)
                .map(display_snippet)
                .unwrap_or_default();
            self.push(K::Reference, path, format!("{at}: {}", e.message));
        }
        for r in template.references() {
            self.reference(r, path);
        }
    }

    fn when_ref(&mut self, s: &str) {
        let path = "conditions.when.ref";
        if let Some(f) = super::fanout::scan(s, true).first() {
            let msg = format!(
                "`${{{}}}` is defined only in a fan-out step's parameters, not in `when` (every item has the step's conditions)",
                f.body
            );
            self.push(K::Reference, path, msg);
            return;
        }
        match parse_template(s) {
            Ok(t) => match t.single_reference() {
                Some(r) => {
                    let r = r.clone();
                    self.reference(&r, path);
                }
                None => self.push(
                    K::Reference,
                    path,
                    format!("{} must be exactly one `${{...}}` reference, such as \"${{build.result.exit_code}}\"", display_snippet(s)),
                ),
            },
            Err(_) => self.string(s, path),
        }
    }

    /// A fan-out's `for_each: "${...}"`: exactly one reference to a step's
    /// result (or a parameter), which becomes a dependency.
    fn for_each_ref(&mut self, s: &str) {
        let path = "for_each";
        let single = parse_template(s)
            .ok()
            .and_then(|t| t.single_reference().cloned());
        match single {
            Some(r @ (Reference::StepResult { .. } | Reference::Param(_))) => self.reference(&r, path),
            _ => self.push(
                K::Reference,
                path,
                format!(
                    "`for_each` is {}: it must be a list, or exactly one reference to a list such as \"${{STEP.result.files}}\" or \"${{params.NAME}}\"",
                    display_snippet(s)
                ),
            ),
        }
    }

    fn reference(&mut self, r: &Reference, path: &str) {
        match r {
            Reference::Param(name) => {
                if !self.wf.parameters.contains_key(name) {
                    let declared = if self.wf.parameters.is_empty() {
                        "the workflow declares no parameters".to_owned()
                    } else {
                        format!(
                            "declared: {}",
                            self.wf
                                .parameters
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    self.push(
                        K::Reference,
                        path,
                        format!("`${{{r}}}` names an undeclared parameter; declare it under `parameters:` ({declared})"),
                    );
                }
            }
            Reference::Env(name) => {
                if !self.wf.env.iter().any(|e| e == name) {
                    self.push(
                        K::Reference,
                        path,
                        format!("`${{{r}}}` reads an environment variable that is not in the workflow's `env:` allow-list; add `{name}` to `env:`"),
                    );
                }
            }
            Reference::StepResult { step, .. } | Reference::StepStatus(step) => {
                let own = &self.wf.steps[self.step].name;
                if step == own {
                    self.push(K::Reference, path, format!("`${{{r}}}` refers to the step's own result; a step can only use results of other steps"));
                    return;
                }
                match self.index.get(step) {
                    Some(j) => self.deps.push(j),
                    None => self.push(
                        K::Reference,
                        path,
                        format!(
                            "`${{{r}}}` refers to an unknown step {}",
                            display_snippet(step)
                        ),
                    ),
                }
            }
            Reference::RunId | Reference::ProjectPath | Reference::ScheduleTime => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::suggest;
    use crate::{Workflow, WorkflowStep};

    fn wf(names: &[&str]) -> Workflow {
        names.iter().fold(Workflow::new("w", ""), |w, n| {
            w.step(WorkflowStep::new(*n, "core", "noop"))
        })
    }

    #[test]
    fn an_unknown_dependency_is_matched_to_the_closest_step_name() {
        let w = wf(&["extract", "transform", "load"]);
        assert_eq!(suggest("extrct", &w), "; did you mean `extract`?");
        assert_eq!(suggest("transfrom", &w), "; did you mean `transform`?");
        assert_eq!(suggest("lod", &w), "; did you mean `load`?");
        // Of two candidates within reach (2 edits and 1), the closer wins.
        let w = wf(&["stop_12", "step_12", "other"]);
        assert_eq!(suggest("step_1", &w), "; did you mean `step_12`?");
        // Characters, not bytes, are counted.
        assert_eq!(suggest("café", &wf(&["cafe"])), "; did you mean `cafe`?");
    }

    #[test]
    fn names_too_far_apart_get_no_suggestion() {
        let w = wf(&["extract", "transform", "load"]);
        assert_eq!(
            suggest("zz", &w),
            "; remove it or add a step named `zz`",
            "too many edits"
        );
        // A prefix is one edit per missing letter, but more than 3 letters
        // of difference in length is never a typo.
        assert_eq!(
            suggest("transformation", &wf(&["transform"])),
            "; remove it or add a step named `transformation`"
        );
        // A dependency longer than 64 bytes is not compared.
        let long = "a".repeat(65);
        let near = format!("{long}b");
        assert!(
            suggest(&long, &wf(&[near.as_str()])).starts_with("; remove it"),
            "no suggestion for a 65-byte name"
        );
    }
}
