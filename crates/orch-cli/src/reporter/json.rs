//! `orch run --json`: the report written a step at a time.

use orch_engine::RunReport;
use orch_model::TaskStatus;
use serde::Serialize;

/// One step of `--json`, in the order and shape of the report's `steps`.
#[derive(Serialize)]
struct StepJson<'a> {
    name: &'a str,
    status: TaskStatus,
    attempts: u32,
    created_at: chrono::DateTime<chrono::Utc>,
    ready_at: Option<chrono::DateTime<chrono::Utc>>,
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
    result: &'a Option<orch_model::TaskResult>,
    note: &'a Option<String>,
    /// It passed after failed attempts (left out when false).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    flaky: bool,
}

/// Writes the report's JSON document to `out` a step at a time: `{run_id,
/// workflow, status, success, execution_time, error, steps: [...]}`, the
/// document docs/cli.md describes.
pub(crate) fn write_report_json(
    report: &RunReport,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    use serde_json::to_writer;
    out.write_all(b"{\"run_id\":")?;
    to_writer(&mut *out, &report.run_id)?;
    out.write_all(b",\"workflow\":")?;
    to_writer(&mut *out, &report.workflow)?;
    out.write_all(b",\"status\":")?;
    to_writer(&mut *out, &report.status)?;
    out.write_all(b",\"success\":")?;
    to_writer(&mut *out, &report.succeeded())?;
    out.write_all(b",\"execution_time\":")?;
    to_writer(&mut *out, &report.duration.as_secs_f64())?;
    out.write_all(b",\"error\":")?;
    to_writer(&mut *out, &report.error)?;
    out.write_all(b",\"steps\":[")?;
    for (i, s) in report.steps.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        to_writer(
            &mut *out,
            &StepJson {
                name: &s.name,
                status: s.status,
                attempts: s.attempts,
                created_at: s.created_at,
                ready_at: s.ready_at,
                started_at: s.started_at,
                finished_at: s.finished_at,
                result: &s.result,
                note: &s.note,
                flaky: s.result.as_ref().is_some_and(|r| r.flaky().is_some()),
            },
        )?;
    }
    out.write_all(b"]}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use orch_engine::StepReport;
    use serde_json::{Value, json};
    use std::time::Duration;

    /// The document as it was built whole before it was streamed: the
    /// reference for [`write_report_json`].
    fn report_json(report: &RunReport) -> Value {
        json!({
            "run_id": report.run_id,
            "workflow": report.workflow,
            "status": report.status,
            "success": report.succeeded(),
            "execution_time": report.duration.as_secs_f64(),
            "error": report.error,
            "steps": report.steps.iter().map(|s| json!({
                "name": &*s.name,
                "status": s.status,
                "attempts": s.attempts,
                "created_at": s.created_at,
                "ready_at": s.ready_at,
                "started_at": s.started_at,
                "finished_at": s.finished_at,
                "result": s.result,
                "note": s.note,
            })).collect::<Vec<_>>(),
        })
    }

    fn step(name: &str, status: TaskStatus, attempts: u32, secs: i64) -> StepReport {
        let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        StepReport {
            name: name.into(),
            status,
            attempts,
            created_at: t0,
            ready_at: Some(t0),
            started_at: (attempts > 0).then_some(t0),
            finished_at: (attempts > 0).then(|| t0 + chrono::TimeDelta::seconds(secs)),
            result: match status {
                TaskStatus::Completed => Some(orch_model::TaskResult::ok(json!({"n": 1}))),
                TaskStatus::Failed => Some(orch_model::TaskResult::failed(
                    "ExitCode",
                    "boom \u{1b}[2J\u{202e}",
                )),
                _ => None,
            },
            note: (status == TaskStatus::Skipped).then(|| "a dependency failed".to_owned()),
        }
    }

    fn report(steps: Vec<StepReport>) -> RunReport {
        RunReport {
            run_id: orch_model::RunId::new(),
            workflow: "w\u{9b}".into(),
            status: orch_model::WorkflowStatus::Failed,
            duration: Duration::from_millis(1234),
            steps,
            error: Some("a step failed".into()),
        }
    }

    #[test]
    fn the_streamed_json_is_the_document_that_was_built_whole() {
        let r = report(vec![
            step("a", TaskStatus::Completed, 1, 0),
            step("b", TaskStatus::Failed, 3, 2),
            step("c", TaskStatus::Skipped, 0, 0),
        ]);
        let mut out = Vec::new();
        write_report_json(&r, &mut out).expect("writes");
        assert_eq!(
            String::from_utf8(out).expect("UTF-8"),
            report_json(&r).to_string()
        );
    }
}
