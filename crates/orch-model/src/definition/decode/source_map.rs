//! `SourceMap`: where the parts of a definition stand, recorded while decoding.

use super::{Decoder, Path};
use crate::node::{Node, NodeValue, Pos};
use std::collections::HashMap;

/// Where the parts of a definition stand in its source text, kept compactly so
/// that validation can point at a line and column after the tree is gone.
/// Built from Rust code, a workflow has an empty map and messages carry paths only.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceMap {
    /// Start of each step.
    pub step: Vec<Pos>,
    /// Each step's `name` value.
    pub name: Vec<Pos>,
    /// Each step's `module` value.
    pub module: Vec<Pos>,
    /// Each dependency entry, flattened in step order.
    pub dep: Vec<Pos>,
    /// Where each step's dependencies start in `dep`.
    pub dep_start: Vec<u32>,
    /// Strings holding `${`, by `(step index, path relative to the step)`.
    pub refs: HashMap<(u32, String), Pos>,
    /// Top-level places by path: `name`, `parameters.NAME` (the key), `env[i]`.
    pub top: HashMap<String, Pos>,
}

impl SourceMap {
    pub(super) fn get(v: &[Pos], i: usize) -> Pos {
        v.get(i).copied().unwrap_or(Pos::UNKNOWN)
    }

    /// Position of step `i`.
    pub fn step_pos(&self, i: usize) -> Pos {
        Self::get(&self.step, i)
    }

    /// Position of step `i`'s name.
    pub fn name_pos(&self, i: usize) -> Pos {
        Self::get(&self.name, i)
    }

    /// Position of step `i`'s module.
    pub fn module_pos(&self, i: usize) -> Pos {
        Self::get(&self.module, i)
    }

    /// Position of dependency `d` of step `i`.
    pub fn dep_pos(&self, i: usize, d: usize) -> Pos {
        match self.dep_start.get(i) {
            Some(start) => Self::get(&self.dep, *start as usize + d),
            None => Pos::UNKNOWN,
        }
    }

    /// Position of a top-level place (`name`, `parameters.NAME`, `env[i]`).
    pub fn top_pos(&self, path: &str) -> Pos {
        self.top.get(path).copied().unwrap_or(Pos::UNKNOWN)
    }

    /// Position of a string holding a reference, by step and path within the step.
    pub fn ref_pos(&self, i: usize, path: &str) -> Pos {
        let key = (u32::try_from(i).unwrap_or(u32::MAX), path.to_owned());
        self.refs
            .get(&key)
            .copied()
            .unwrap_or_else(|| self.step_pos(i))
    }
}

impl Decoder<'_> {
    pub(super) fn record_refs(&mut self, node: &Node<'_>, path: &Path<'_>, step: u32) {
        match &node.value {
            NodeValue::Str(s) if s.contains("${") => {
                let rel = relative_to_step(&path.to_string());
                self.map.refs.insert((step, rel), node.pos);
            }
            NodeValue::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.record_refs(item, &Path::Index(path, i), step);
                }
            }
            NodeValue::Map(entries) => {
                for (k, v) in entries {
                    self.record_refs(v, &Path::Field(path, &k.name), step);
                }
            }
            _ => {}
        }
    }
}

/// The lists of steps: a path into one of them is relative to its step.
const STEP_LISTS: [&str; 3] = ["steps[", "on_failure[", "finally["];

/// `steps[3].parameters.x` → `parameters.x`.
pub(super) fn relative_to_step(path: &str) -> String {
    match path.find("].") {
        Some(i) if STEP_LISTS.iter().any(|p| path.starts_with(p)) => path[i + 2..].to_owned(),
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn reference_paths_are_relative_to_their_step() {
        assert_eq!(
            relative_to_step("steps[12].parameters.a[0]"),
            "parameters.a[0]"
        );
        assert_eq!(relative_to_step("env[0]"), "env[0]");
    }
}
