//! The workflow and its steps: top-level fields, `defaults` and how they apply to steps that do not set a field themselves, and each step's fields.

use super::fields::{DEFAULTS_FIELDS, STEP_FIELDS, WORKFLOW_FIELDS};
use super::{Decoder, Path};
use crate::definition::{RetryPolicy, StepDefaults, Workflow, WorkflowStep};
use crate::diagnostic::DiagnosticKind as K;
use crate::enums::WorkflowStatus;
use crate::node::{Node, NodeValue};

pub(super) const SET_TIMEOUT: u8 = 1;
pub(super) const SET_MAX_RETRIES: u8 = 2;
pub(super) const SET_RETRY: u8 = 4;
pub(super) const SET_PRIORITY: u8 = 8;
pub(super) const SET_CACHE: u8 = 16;
pub(super) const SET_RESOURCES: u8 = 32;

/// The step number under which the positions of `defaults:` references are
/// kept until the steps that take them are known.
const DEFAULTS_STEP: u32 = u32::MAX;

impl Decoder<'_> {
    pub(super) fn workflow(&mut self, root: Node<'_>) -> Option<Workflow> {
        let path = Path::Root;
        let root_pos = root.pos;
        let mut f = self.fields(root, &path, WORKFLOW_FIELDS, "a workflow")?;
        let mut wf = Workflow::new(String::new(), String::new());
        match f.take("name") {
            Some((_, n)) => {
                self.map.top.insert("name".into(), n.pos);
                if let Some(s) = self.string(n, &Path::Field(&path, "name")) {
                    wf.name = s;
                }
            }
            None => self.err(
                K::MissingField,
                &path,
                root_pos,
                "missing field `name`: every workflow needs a name",
            ),
        }
        if let Some((_, n)) = f.take("description") {
            wf.description = self
                .string(n, &Path::Field(&path, "description"))
                .unwrap_or_default();
        }
        if let Some((_, n)) = f.take("version") {
            wf.version = self
                .lenient_string(n, &Path::Field(&path, "version"))
                .unwrap_or_default();
        }
        if let Some((_, n)) = f.take("parameters") {
            if let NodeValue::Map(entries) = &n.value {
                for (k, _) in entries {
                    self.map.top.insert(format!("parameters.{}", k.name), k.pos);
                }
            }
            wf.parameters = self
                .object(n, &Path::Field(&path, "parameters"), None)
                .unwrap_or_default();
        }
        if let Some((_, n)) = f.take("env") {
            if let NodeValue::Seq(items) = &n.value {
                for (i, item) in items.iter().enumerate() {
                    self.map.top.insert(format!("env[{i}]"), item.pos);
                }
            }
            wf.env = self.string_list(n, &Path::Field(&path, "env"), None);
        }
        if let Some((_, n)) = f.take("secrets") {
            wf.secrets = self.secrets_section(n, &Path::Field(&path, "secrets"));
        }
        if let Some((_, n)) = f.take("concurrency") {
            wf.concurrency = self
                .concurrency(n, &Path::Field(&path, "concurrency"))
                .map(Box::new);
        }
        if let Some((_, n)) = f.take("defaults") {
            if let Some(d) = self.defaults(n, &Path::Field(&path, "defaults")) {
                wf.defaults = d;
            }
        }
        if let Some((_, n)) = f.take("status") {
            if let Some(s) =
                self.text_enum::<WorkflowStatus>(n, &Path::Field(&path, "status"), K::InvalidValue)
            {
                wf.status = s;
            }
        }
        if let Some((_, n)) = f.take("metadata") {
            wf.metadata = self
                .object(n, &Path::Field(&path, "metadata"), None)
                .unwrap_or_default();
        }
        if let Some((_, n)) = f.take("schedule") {
            wf.schedule = self.schedule(n, &Path::Field(&path, "schedule"));
        }
        match f.take("steps") {
            Some((_, n)) => {
                wf.steps = self.steps(n, &Path::Field(&path, "steps"));
                self.hooks(&mut f, &path, &mut wf);
                self.apply_defaults(&mut wf.steps, &wf.defaults);
            }
            None => self.err(
                K::MissingField,
                &path,
                root_pos,
                "missing field `steps`: a workflow needs at least one step",
            ),
        }
        Some(wf)
    }

    pub(super) fn defaults(&mut self, node: Node<'_>, path: &Path<'_>) -> Option<StepDefaults> {
        let mut f = self.fields(node, path, DEFAULTS_FIELDS, "step defaults")?;
        let mut d = StepDefaults::default();
        if let Some((_, n)) = f.take("timeout") {
            d.timeout = self.timeout(n, &Path::Field(path, "timeout")).flatten();
        }
        if let Some((_, n)) = f.take("max_retries") {
            d.max_retries = self.count(
                n,
                &Path::Field(path, "max_retries"),
                self.limits.max_retries,
                "max_retries",
            );
        }
        if let Some((_, n)) = f.take("retry") {
            d.retry = self.retry(n, &Path::Field(path, "retry"), &RetryPolicy::default());
        }
        if let Some((_, n)) = f.take("priority") {
            d.priority = self.priority(n, &Path::Field(path, "priority"));
        }
        if let Some((_, n)) = f.take("cache") {
            // Its globs' `${...}` positions are kept under DEFAULTS_STEP and
            // given to each step that takes them (apply_defaults).
            d.cache = self.cache(n, &Path::Field(path, "cache"), DEFAULTS_STEP);
        }
        if let Some((_, n)) = f.take("resources") {
            d.resources = self.resources(n, &Path::Field(path, "resources"));
        }
        Some(d)
    }

    pub(super) fn mark(&mut self, bit: u8) {
        if let Some(b) = self.explicit.last_mut() {
            *b |= bit;
        }
    }

    /// Gives every step the defaults for the fields it does not set itself.
    pub(super) fn apply_defaults(&mut self, steps: &mut [WorkflowStep], d: &StepDefaults) {
        if d.is_empty() {
            return;
        }
        // Where the default `cache.files` globs that hold `${...}` are, so
        // that a problem with one is reported there for each step taking it.
        let glob_refs: Vec<(usize, crate::node::Pos)> = match &d.cache {
            Some(Some(spec)) => (0..spec.files.len())
                .filter_map(|k| {
                    let key = (DEFAULTS_STEP, format!("defaults.cache.files[{k}]"));
                    self.map.refs.get(&key).map(|p| (k, *p))
                })
                .collect(),
            _ => Vec::new(),
        };
        for (i, (s, &set)) in steps.iter_mut().zip(&self.explicit).enumerate() {
            if set & SET_TIMEOUT == 0 && d.timeout.is_some() {
                s.timeout = d.timeout;
            }
            if let (0, Some(m)) = (set & SET_MAX_RETRIES, d.max_retries) {
                s.max_retries = m;
            }
            if let (0, Some(r)) = (set & SET_RETRY, &d.retry) {
                s.retry = r.clone();
            }
            if let (0, Some(p)) = (set & SET_PRIORITY, d.priority) {
                s.priority = p;
            }
            if let (0, Some(c)) = (set & SET_CACHE, &d.cache) {
                s.cache = c.clone();
                let step = u32::try_from(i).unwrap_or(u32::MAX);
                for (k, pos) in &glob_refs {
                    self.map
                        .refs
                        .insert((step, format!("cache.files[{k}]")), *pos);
                }
            }
            if let (0, Some(r)) = (set & SET_RESOURCES, &d.resources) {
                s.resources = r.clone();
            }
        }
    }

    pub(super) fn steps(&mut self, node: Node<'_>, path: &Path<'_>) -> Vec<WorkflowStep> {
        let pos = node.pos;
        let NodeValue::Seq(items) = node.value else {
            self.wrong_type(
                path,
                &Node {
                    pos,
                    value: node.value,
                },
                "a list of steps",
            );
            return Vec::new();
        };
        let count = self.streamed.as_ref().map_or(items.len(), |(_, n)| *n);
        if count == 0 {
            self.err(
                K::MissingField,
                path,
                pos,
                "a workflow needs at least one step",
            );
            return Vec::new();
        }
        if count > self.limits.max_steps {
            let msg = format!(
                "{} steps exceed the limit of {} (limit max_steps)",
                count, self.limits.max_steps
            );
            self.err(K::Limit, path, pos, msg);
            return Vec::new();
        }
        if let Some((streamed, _)) = self.streamed.take() {
            // The steps were decoded while parsing; `items` is empty.
            return streamed;
        }
        let n = items.len();
        self.map.step.reserve_exact(n);
        self.map.name.reserve_exact(n);
        self.map.module.reserve_exact(n);
        self.map.dep_start.reserve_exact(n);
        let mut out = Vec::with_capacity(n);
        // Consuming the list drops each step's subtree once decoded, keeping peak memory low.
        for (i, item) in items.into_iter().enumerate() {
            let step = self.step(item, &Path::Index(path, i), i as u32);
            out.push(step);
        }
        out
    }

    pub(super) fn step(&mut self, node: Node<'_>, path: &Path<'_>, index: u32) -> WorkflowStep {
        let pos = node.pos;
        self.map.step.push(pos);
        self.map
            .dep_start
            .push(u32::try_from(self.map.dep.len()).unwrap_or(u32::MAX));
        let mut s = WorkflowStep::new("", "", "");
        self.explicit.push(0);
        let Some(mut f) = self.fields(node, path, STEP_FIELDS, "a step") else {
            self.map.name.push(pos);
            self.map.module.push(pos);
            return s;
        };
        let (mut module_pos, mut action_pos) = (pos, pos);
        for (field, target) in [("name", 0u8), ("module", 1), ("action", 2)] {
            match f.take(field) {
                Some((_, n)) => {
                    let vpos = n.pos;
                    let v = self
                        .compact(n, &Path::Field(path, field))
                        .unwrap_or_default();
                    match target {
                        0 => {
                            self.map.name.push(vpos);
                            s.name = v;
                        }
                        1 => {
                            self.map.module.push(vpos);
                            module_pos = vpos;
                            s.module = v;
                        }
                        _ => {
                            action_pos = vpos;
                            s.action = v;
                        }
                    }
                }
                None => {
                    match target {
                        0 => self.map.name.push(pos),
                        1 => self.map.module.push(pos),
                        _ => {}
                    }
                    let msg = format!(
                        "missing field `{field}`: every step needs a name, a module and an action"
                    );
                    self.err(K::MissingField, path, pos, msg);
                }
            }
        }
        if let Some((_, n)) = f.take("description") {
            s.description = self
                .string(n, &Path::Field(path, "description"))
                .unwrap_or_default();
        }
        let spec = self.step_action(&s.module, &s.action, path, module_pos, action_pos);
        let action = (s.module.as_str(), s.action.as_str());
        match f.take("parameters") {
            Some((k, n)) => {
                if let Some(spec) = spec {
                    self.step_params(action, spec, &k, &n, path);
                }
                let p = Path::Field(path, "parameters");
                if !matches!(n.value, NodeValue::Null) {
                    s.parameters = self.object(n, &p, Some(index)).unwrap_or_default().into();
                }
            }
            None => {
                if let Some(spec) = spec {
                    self.no_params(action, spec, action_pos, path);
                }
            }
        }
        if let Some((_, n)) = f.take("dependencies") {
            let p = Path::Field(path, "dependencies");
            match n.value {
                NodeValue::Null => {}
                NodeValue::Seq(items) => {
                    if items.len() > self.limits.max_dependencies {
                        let msg = format!(
                            "{} dependencies exceed the limit of {} (limit max_dependencies)",
                            items.len(),
                            self.limits.max_dependencies
                        );
                        self.err(K::Limit, &p, n.pos, msg);
                    } else {
                        s.dependencies.reserve_exact(items.len());
                        for (i, item) in items.into_iter().enumerate() {
                            let ipos = item.pos;
                            if let Some(d) = self.compact(item, &Path::Index(&p, i)) {
                                self.map.dep.push(ipos);
                                s.dependencies.push(d);
                            }
                        }
                    }
                }
                other => self.wrong_type(
                    &p,
                    &Node {
                        pos: n.pos,
                        value: other,
                    },
                    "a list of step names",
                ),
            }
        }
        if let Some((_, n)) = f.take("conditions") {
            if !matches!(n.value, NodeValue::Null) {
                if let Some(c) = self.conditions(n, &Path::Field(path, "conditions"), index) {
                    s.conditions = c;
                }
            }
        }
        if let Some((_, n)) = f.take("phase") {
            self.step_phase(n, &Path::Field(path, "phase"), &mut s);
        }
        if let Some((_, n)) = f.take("timeout") {
            self.mark(SET_TIMEOUT);
            if let Some(t) = self.timeout(n, &Path::Field(path, "timeout")) {
                s.timeout = t;
            }
        }
        if let Some((_, n)) = f.take("retry_count") {
            self.count(
                n,
                &Path::Field(path, "retry_count"),
                self.limits.max_retries,
                "max_retries",
            );
        }
        if let Some((_, n)) = f.take("max_retries") {
            self.mark(SET_MAX_RETRIES);
            if let Some(m) = self.count(
                n,
                &Path::Field(path, "max_retries"),
                self.limits.max_retries,
                "max_retries",
            ) {
                s.max_retries = m;
            }
        }
        if let Some((_, n)) = f.take("retry") {
            self.mark(SET_RETRY);
            if let Some(r) = self.retry(n, &Path::Field(path, "retry"), &RetryPolicy::default()) {
                s.retry = r;
            }
        }
        if let Some((_, n)) = f.take("priority") {
            self.mark(SET_PRIORITY);
            if let Some(p) = self.priority(n, &Path::Field(path, "priority")) {
                s.priority = p;
            }
        }
        if let Some((_, n)) = f.take("resources") {
            self.mark(SET_RESOURCES);
            if let Some(r) = self.resources(n, &Path::Field(path, "resources")) {
                s.resources = r;
            }
        }
        if let Some((_, n)) = f.take("cache") {
            self.mark(SET_CACHE);
            if let Some(c) = self.cache(n, &Path::Field(path, "cache"), index) {
                s.cache = c;
            }
        }
        if let Some((_, n)) = f.take("secrets") {
            s.secrets = self.step_secrets(n, &Path::Field(path, "secrets"), index);
        }
        s.fan_out = self.fan_out(&mut f, path, index);
        s
    }
}
