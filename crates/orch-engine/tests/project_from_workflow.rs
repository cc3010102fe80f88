//! The seed's `engine.create_project_from_workflow` (issue 10 item 22): a project from a
//! template, one of its workflows run in it in a session, the success recorded as a milestone.

mod common;

use common::rt;
use orch_engine::OrchestrationEngine;
use orch_model::{ErrorCode, ProjectStatus};
use serde_json::Map;
use std::time::Duration;

#[test]
fn create_project_from_workflow_runs_in_a_session_and_records_a_milestone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = rt();
    rt.block_on(async {
        let engine = OrchestrationEngine::builder()
            .home(dir.path().join("home"))
            .work_dir(dir.path())
            .build()
            .expect("engine");
        let mut events = engine.subscribe();
        let out = engine
            .create_project_from_workflow("analysis", "ai-analysis", None, Map::new())
            .await
            .expect("created");
        let report = out.run.expect("the run started");
        assert!(report.succeeded(), "{report:?}");
        assert_eq!(out.project.template.as_deref(), Some("ai_analysis"));
        assert_eq!(out.project.status, ProjectStatus::Active);
        let m = &out.project.milestones["workflow_ai-analysis_completed"];
        assert_eq!(m["success"], true);
        assert_eq!(m["run_id"], report.run_id.to_string());
        let project = engine
            .project_manager()
            .get_project("analysis")
            .expect("known to the engine");
        assert!(
            std::path::Path::new(&project.path)
                .join("reports/analysis.md")
                .is_file()
        );
        // It ran as the engine's runs do: in a session, with its events.
        let mut names = Vec::new();
        while let Ok(e) = events.try_recv() {
            names.push(e.kind().to_owned());
        }
        for want in [
            "session_created",
            "workflow_started",
            "workflow_completed",
            "session_closed",
        ] {
            assert!(names.iter().any(|n| n == want), "no {want} in {names:?}");
        }
        assert!(engine.shutdown(Duration::from_secs(10)).await);
        let e = engine
            .create_project_from_workflow("late", "ai-analysis", None, Map::new())
            .await
            .expect_err("shut down");
        assert_eq!(e.error_code(), ErrorCode::InvalidState);
        assert!(engine.project_manager().get_project("late").is_none());
    });
}
