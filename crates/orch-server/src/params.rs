//! Path parameters, checked before anything is looked up: run ids (a UUID or a unique prefix), workflow, project and step names (the model's name rules).

use crate::error::{ApiError, ApiResult};
use orch_model::definition::{NameKind, check_name};
use orch_model::store::RunRecord;
use orch_model::{Limits, RunId, Store};
use std::sync::Arc;

/// A run id as a path gives it: a whole UUID, or a prefix of one (hex
/// digits and dashes, at most 36 characters).
pub(crate) fn run_ref(s: &str) -> ApiResult<&str> {
    let ok =
        !s.is_empty() && s.len() <= 36 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if ok {
        Ok(s)
    } else {
        Err(ApiError::bad_request(format!(
            "{:?} is not a run id: give the id (a UUID) or a unique prefix of it, as GET /runs \
             lists them",
            s
        )))
    }
}

/// A workflow, project or step name, checked with the model's rules.
pub(crate) fn name(kind: NameKind, s: &str, limits: &Limits) -> ApiResult<()> {
    check_name(kind, s, limits).map_err(ApiError::bad_request)
}

/// The run `id` names: by id, or by a prefix that only one run has (404
/// when none has it, 400 when several do).
pub(crate) async fn find_run(store: &Arc<dyn Store>, id: &str) -> ApiResult<RunRecord> {
    let id = run_ref(id)?;
    let not_found =
        || ApiError::not_found(format!("run `{id}` not found; GET /runs lists the runs"));
    if let Ok(rid) = id.parse::<RunId>() {
        return store.get_run_brief(rid).await?.ok_or_else(not_found);
    }
    let mut matches = store
        .list_runs()
        .await?
        .into_iter()
        .filter(|r| r.id.to_string().starts_with(id));
    match (matches.next(), matches.next()) {
        (Some(r), None) => Ok(r),
        (None, _) => Err(not_found()),
        (Some(_), Some(_)) => Err(ApiError::bad_request(format!(
            "`{id}` is the start of more than one run's id; give more of it"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_refs_are_hex_and_dashes() {
        assert!(run_ref("0195f3a2-1c").is_ok());
        assert!(run_ref("").is_err());
        assert!(run_ref("../etc").is_err());
        assert!(run_ref("last").is_err());
        assert!(run_ref(&"a".repeat(37)).is_err());
    }

    #[test]
    fn names_follow_the_model() {
        let l = Limits::default();
        assert!(name(NameKind::Workflow, "etl.daily", &l).is_ok());
        assert!(name(NameKind::Workflow, "a/b", &l).is_err());
        assert!(name(NameKind::Workflow, "..", &l).is_err());
        assert!(name(NameKind::Step, "a.b", &l).is_err());
    }
}
