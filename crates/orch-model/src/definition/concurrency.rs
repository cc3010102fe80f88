//! A workflow's `concurrency:`: runs that render the same key share at most `limit` slots, held in the store, and `on_conflict` says what a run does when every slot is taken.

use super::Workflow;
use super::decode::SourceMap;
use crate::diagnostic::{DiagnosticKind as K, Diagnostics};
use crate::reference::{Reference, parse_template_partial};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// The most runs one key may let run at once.
pub const MAX_CONCURRENCY_LIMIT: u32 = 1000;

/// `concurrency: {key, limit, on_conflict}` of a workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Concurrency {
    /// Runs whose keys render the same share the slots, e.g.
    /// `deploy-${params.env}`; only `${params.NAME}` references.
    pub key: String,
    /// How many runs of the key may run at once (1 to
    /// [`MAX_CONCURRENCY_LIMIT`]; default 1).
    pub limit: u32,
    /// What a run does when every slot is taken.
    pub on_conflict: OnConflict,
}

/// What a run does when its concurrency key has no free slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// Wait for a slot (the default).
    #[default]
    Queue,
    /// Ask the runs holding the slots to stop, then take a slot as they end.
    CancelRunning,
    /// Do not run: every step is skipped.
    Skip,
}

impl OnConflict {
    /// Every policy, in declaration order.
    pub const ALL: &'static [OnConflict] = &[Self::Queue, Self::CancelRunning, Self::Skip];

    /// The policy's text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queue => "queue",
            Self::CancelRunning => "cancel_running",
            Self::Skip => "skip",
        }
    }
}

impl fmt::Display for OnConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OnConflict {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .copied()
            .find(|p| p.as_str() == s.trim())
            .ok_or_else(|| {
                format!(
                    "`{s}` is not a valid on_conflict; expected one of: queue, cancel_running, skip"
                )
            })
    }
}

impl Concurrency {
    /// The key with `${params.NAME}` replaced by the run's values (strings
    /// as they are, other values as JSON).
    ///
    /// # Errors
    /// A reference that is not a parameter the run has.
    pub fn render_key(
        &self,
        params: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, String> {
        let (template, errors) = parse_template_partial(&self.key);
        if let Some(e) = errors.first() {
            return Err(e.message.clone());
        }
        let mut out = String::new();
        for seg in &template.segments {
            match seg {
                crate::reference::Segment::Literal(s) => out.push_str(s),
                crate::reference::Segment::Ref { reference, .. } => match reference {
                    Reference::Param(n) => match params.get(n) {
                        Some(serde_json::Value::String(s)) => out.push_str(s),
                        Some(v) => out.push_str(&v.to_string()),
                        None => return Err(format!("the run has no parameter `{n}`")),
                    },
                    other => {
                        return Err(format!(
                            "`${{{other}}}`: a concurrency key may only use `${{params.NAME}}`"
                        ));
                    }
                },
            }
        }
        Ok(out)
    }
}

/// The checks of `concurrency:` that need the whole workflow: the key's
/// references name declared parameters only.
pub(crate) fn check(wf: &Workflow, map: &SourceMap, d: &mut Diagnostics) {
    let Some(c) = &wf.concurrency else { return };
    let pos = map.top_pos("concurrency.key");
    let (template, errors) = parse_template_partial(&c.key);
    for e in errors {
        d.push(K::Reference, "concurrency.key", pos, e.message);
    }
    for r in template.references() {
        match r {
            Reference::Param(n) if wf.parameters.contains_key(n) => {}
            Reference::Param(_) => d.push(
                K::Reference,
                "concurrency.key",
                pos,
                format!("`${{{r}}}` names an undeclared parameter; declare it under `parameters:`"),
            ),
            other => d.push(
                K::Reference,
                "concurrency.key",
                pos,
                format!(
                    "`${{{other}}}`: a concurrency key is known before the run starts, so it may only use `${{params.NAME}}`"
                ),
            ),
        }
    }
}
