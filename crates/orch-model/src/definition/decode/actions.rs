//! A step's `module.action` and parameters checked against an [`ActionCatalog`] while the step is decoded, so that each problem points at its key.
//!
//! Only when the decoder was given a catalog (`orch validate`, `orch run
//! FILE`). The last `module.action` looked up is kept, so a definition whose
//! steps run one action costs one comparison per step; a step without
//! parameters whose action requires none costs nothing more.

use super::{Decoder, Path};
use crate::actions::{ActionSpec, Lookup, ParamProblem, check_params, missing};
use crate::diagnostic::DiagnosticKind as K;
use crate::node::{Key, Node, NodeValue, Pos};
use compact_str::CompactString;

/// The last `module.action` looked up and what the catalog said.
pub(super) type LastAction<'l> = Option<(CompactString, CompactString, Lookup<'l>)>;

impl<'l> Decoder<'l> {
    /// Looks `module.action` up; reports an unknown module at `module_pos`
    /// or an unknown action at `action_pos`. Returns the action's
    /// declaration when it has one.
    pub(super) fn step_action(
        &mut self,
        module: &CompactString,
        action: &CompactString,
        path: &Path<'_>,
        module_pos: Pos,
        action_pos: Pos,
    ) -> Option<&'l ActionSpec> {
        let catalog = self.actions?;
        if module.is_empty() || action.is_empty() {
            // Missing or malformed: reported already.
            return None;
        }
        let found = match &self.last_action {
            Some((m, a, found)) if m == module && a == action => *found,
            _ => {
                let found = catalog.lookup(module, action);
                self.last_action = Some((module.clone(), action.clone(), found));
                found
            }
        };
        match found {
            Lookup::Known(spec) => spec,
            Lookup::UnknownAction => {
                let msg = catalog.unknown_message(module, action);
                self.err(
                    K::UnknownModule,
                    &Path::Field(path, "action"),
                    action_pos,
                    msg,
                );
                None
            }
            Lookup::UnknownModule => {
                let msg = catalog.unknown_message(module, action);
                self.err(
                    K::UnknownModule,
                    &Path::Field(path, "module"),
                    module_pos,
                    msg,
                );
                None
            }
        }
    }

    /// Checks a step's `parameters` map (`key` is where it stands) against
    /// the declaration; a value that is not a map is left to the decoder.
    pub(super) fn step_params(
        &mut self,
        action: (&str, &str),
        spec: &ActionSpec,
        key: &Key<'_>,
        node: &Node<'_>,
        path: &Path<'_>,
    ) {
        let params = Path::Field(path, "parameters");
        let mut report = |p: ParamProblem| match &p.key {
            Some(k) => self.err(p.kind, &Path::Field(&params, k), p.pos, p.message),
            None => self.err(p.kind, &params, p.pos, p.message),
        };
        match &node.value {
            NodeValue::Map(entries) => check_params(
                action,
                spec,
                entries.iter().map(|(k, v)| (k.name.as_ref(), v, k.pos)),
                key.pos,
                &mut report,
            ),
            NodeValue::Null => missing(action, spec, 0, key.pos, &mut report),
            _ => {}
        }
    }

    /// Reports the required parameters of a step that has no `parameters`.
    pub(super) fn no_params(
        &mut self,
        action: (&str, &str),
        spec: &ActionSpec,
        pos: Pos,
        path: &Path<'_>,
    ) {
        missing(action, spec, 0, pos, &mut |p| {
            self.err(p.kind, &Path::Field(path, "parameters"), p.pos, p.message);
        });
    }
}
