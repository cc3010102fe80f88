//! ProjectManager: templates, safe creation, project workflows, milestones, metrics, archives.

mod common;

use common::{pm, rt};
use orch_model::{ErrorCode, OrchestrationError, ProjectStatus};
use orch_projects::{CreateOptions, ProjectManager};
use serde_json::{Map, Value, json};
use std::path::Path;

fn params(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("object")
}

/// Every path under `root` (relative), with a type mark, sorted: the file system's snapshot.
fn tree(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| {
            let kind = if e.path_is_symlink() {
                "@"
            } else if e.file_type().is_dir() {
                "/"
            } else {
                ""
            };
            format!(
                "{}{kind}",
                e.path().strip_prefix(root).unwrap_or(e.path()).display()
            )
        })
        .collect();
    v.sort();
    v
}

/// Replaces timestamps and the temporary path so a status can be compared whole.
fn redact(v: &mut Value, root: &str) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k.ends_with("_at") || k == "finished_at" {
                    *x = json!("[time]");
                } else if k == "run_id" {
                    *x = json!("[id]");
                } else {
                    redact(x, root);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| redact(x, root)),
        Value::String(s) if s.contains(root) => *s = s.replace(root, "[dir]"),
        _ => {}
    }
}

#[test]
fn an_ai_analysis_project_has_the_originals_layout_and_documents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pm = pm(dir.path());
    assert_eq!(
        pm.list_templates(),
        vec!["ai_analysis", "data_pipeline", "web_application"]
    );
    let p = pm
        .create_project(
            "p",
            Some("ai_analysis"),
            None,
            CreateOptions {
                description: "demo".into(),
                author: "Dev Team".into(),
                tags: vec!["x".into()],
            },
        )
        .expect("created");
    let root = dir.path().join("projects/p");
    assert_eq!(p.path, root.display().to_string());
    let t = tree(&root);
    for want in [
        "README.md",
        "AGENTS.md",
        ".orch/",
        ".orch/project.json",
        ".orch/workflows/ai-analysis.yaml",
        ".orch/workflows/build-and-test.yaml",
        "src/README.md",
        "src/AGENTS.md",
        "config/README.md",
        "data/AGENTS.md",
        "output/README.md",
        "reports/README.md",
    ] {
        assert!(t.contains(&want.to_owned()), "missing {want} in {t:?}");
    }
    assert!(
        !t.iter().any(|e| e.starts_with(".orch/README")),
        "no docs inside .orch"
    );
    let readme = std::fs::read_to_string(root.join("README.md")).expect("readme");
    assert!(readme.starts_with("# p\n\ndemo\n"), "{readme}");
    assert!(readme.contains("- **Author**: Dev Team"));
    assert!(readme.contains("`orch project run p ai-analysis`"));
    let nested = std::fs::read_to_string(root.join("src/README.md")).expect("nested");
    assert!(nested.contains("Source code and implementation files"));
    assert!(nested.contains("[p](../README.md)"), "{nested}");
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join(".orch/project.json")).expect("file"),
    )
    .expect("json");
    let keys: Vec<&str> = file
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        vec![
            "name",
            "description",
            "type",
            "path",
            "status",
            "version",
            "template",
            "config",
            "workflows",
            "active_workflows",
            "required_modules",
            "author",
            "tags",
            "created_at",
            "updated_at",
            "milestones",
            "metrics"
        ]
    );
    assert_eq!(file["type"], "ai_analysis");
    assert_eq!(file["config"]["analysis"]["max_file_size"], "1MB");
    // A second manager finds it again.
    assert_eq!(self::pm(dir.path()).list_projects(), vec!["p"]);
    // No staging directory is left behind.
    let left: Vec<String> = tree(&dir.path().join("projects"))
        .into_iter()
        .filter(|e| e.starts_with(".orch-new"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn the_seeds_project_example_runs_for_real() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pm = pm(dir.path());
    pm.create_project(
        "chatbot-analysis",
        Some("ai_analysis"),
        None,
        CreateOptions {
            description: "AI analysis of chatbot conversations".into(),
            ..CreateOptions::default()
        },
    )
    .expect("created");
    let root = dir.path().join("projects/chatbot-analysis");
    std::fs::write(
        root.join("src/bot.py"),
        "# a bot\n\ndef reply(x):\n    return x  # echo\n",
    )
    .expect("write");
    std::fs::write(root.join("src/ui.ts"), "// ui\nexport const a = 1;\n").expect("write");
    let report = rt()
        .block_on(pm.execute_project_workflow(
            "chatbot-analysis",
            "ai-analysis",
            params(json!({"focus_areas": ["sentiment", "intent", "quality"]})),
        ))
        .expect("ran");
    assert!(report.succeeded(), "{report:?}");
    let stats = &report
        .steps
        .iter()
        .find(|s| &*s.name == "stats")
        .and_then(|s| s.result.as_ref())
        .expect("stats")
        .data;
    assert_eq!(
        stats["files"], 2,
        "only *.py, *.js, *.ts count by the project's config: {stats}"
    );
    assert_eq!(
        stats["code_by_language"],
        json!({"Python": 2, "TypeScript": 1})
    );
    let md = std::fs::read_to_string(root.join("reports/analysis.md")).expect("report");
    assert!(md.starts_with("# Code analysis\n"), "{md}");
    assert!(
        md.contains("2 files, 6 lines\n(3 code, 2 comment, 1 blank)"),
        "{md}"
    );
    assert!(md.contains("- sentiment\n- intent\n- quality"), "{md}");
    assert!(
        md.contains("| name | files | lines | code | comment | blank |\n|---|---|---|---|---|---|\n| Python | 1 | 4 | 2 | 1 | 1 |\n| TypeScript | 1 | 2 | 1 | 1 | 0 |"),
        "a table row per language: {md}"
    );
    let svg = std::fs::read_to_string(root.join("reports/code-by-language.svg")).expect("chart");
    assert!(svg.contains(">Python</text>") && svg.contains(">Lines of code by language</text>"));

    let data = json!({"quality_score": 8.5, "insights_generated": 23});
    let before = data.clone();
    pm.add_project_milestone("chatbot-analysis", "initial_analysis_complete", &data)
        .expect("milestone");
    assert_eq!(data, before, "the caller's data is not changed");

    let mut status =
        serde_json::to_value(pm.get_project_status("chatbot-analysis").expect("status"))
            .expect("json");
    redact(&mut status, &dir.path().display().to_string());
    assert_eq!(
        status,
        json!({
            "name": "chatbot-analysis",
            "status": "active",
            "type": "ai_analysis",
            "version": "1.0",
            "path": "[dir]/projects/chatbot-analysis",
            "workflows": 2,
            "active_workflows": 0,
            "required_modules": ["code", "chart", "report"],
            "created_at": "[time]",
            "updated_at": "[time]",
            "milestones": {"initial_analysis_complete": {"quality_score": 8.5, "insights_generated": 23, "completed_at": "[time]"}},
            "metrics": {
                "workflow_runs": 1,
                "workflows_succeeded": 1,
                "last_workflow": {"name": "ai-analysis", "status": "completed", "run_id": "[id]", "finished_at": "[time]"}
            }
        })
    );
    // Milestones and metrics are on disk too.
    let again = self::pm(dir.path())
        .get_project("chatbot-analysis")
        .expect("reloaded");
    assert!(again.milestones.contains_key("initial_analysis_complete"));
}

#[test]
fn data_pipeline_workflows_turn_csv_into_json_and_charts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pm = pm(dir.path());
    pm.create_project(
        "pipe",
        Some("data_pipeline"),
        None,
        CreateOptions::default(),
    )
    .expect("created");
    let root = dir.path().join("projects/pipe");
    assert!(root.join("data/raw/README.md").is_file() && !root.join("data/README.md").exists());
    std::fs::write(
        root.join("data/raw/sales.csv"),
        "region,amount\neu,10\nus,5\neu,1\n",
    )
    .expect("csv");
    std::fs::write(root.join("data/raw/visits.csv"), "day,count\n1,3\n2,4\n").expect("csv");
    let rt = rt();
    let r = rt
        .block_on(pm.execute_project_workflow(
            "pipe",
            "data-processing",
            params(json!({"group_by": ""})),
        ))
        .expect("ran");
    assert!(r.succeeded(), "{r:?}");
    let sales: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("data/processed/sales.json")).expect("json"),
    )
    .expect("parse");
    assert_eq!(sales["rows"], 3);
    assert_eq!(sales["columns"]["amount"]["sum"], 16.0);
    let r = rt
        .block_on(pm.execute_project_workflow("pipe", "visualization", Map::new()))
        .expect("ran");
    assert!(r.succeeded(), "{r:?}");
    let svg = std::fs::read_to_string(root.join("data/output/records-per-file.svg")).expect("svg");
    assert!(svg.contains(">sales</text>") && svg.contains(">visits</text>"));
}

#[test]
fn web_application_builds_tests_and_deploys_dry_by_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pm = pm(dir.path());
    pm.create_project(
        "web",
        Some("web_application"),
        None,
        CreateOptions::default(),
    )
    .expect("created");
    let root = dir.path().join("projects/web");
    let rt = rt();
    let r = rt
        .block_on(pm.execute_project_workflow(
            "web",
            "build-and-test",
            params(
                json!({"build_program": "sh", "build_args": ["-c", "echo built > built.txt"],
                          "test_program": "sh", "test_args": ["-c", "echo 3 tests passed"]}),
            ),
        ))
        .expect("ran");
    assert!(r.succeeded(), "{r:?}");
    assert!(
        root.join("built.txt").is_file(),
        "the build ran in the project directory"
    );
    let summary = std::fs::read_to_string(root.join("docs/build-and-test.md")).expect("summary");
    assert!(summary.contains("3 tests passed"), "{summary}");
    // A failing test command fails the run with the step's error.
    let r = rt
        .block_on(pm.execute_project_workflow(
            "web",
            "build-and-test",
            params(json!({"build_program": "true", "test_program": "false"})),
        ))
        .expect("ran");
    assert!(!r.succeeded());
    // Deploy: a dry run records the plan and runs nothing.
    let r = rt
        .block_on(pm.execute_project_workflow(
            "web",
            "deploy",
            params(json!({"program": "touch", "args": ["deployed"]})),
        ))
        .expect("ran");
    assert!(r.succeeded(), "{r:?}");
    assert!(!root.join("deployed").exists(), "dry run");
    assert_eq!(r.steps[1].status, orch_model::TaskStatus::Skipped);
    assert!(
        std::fs::read_to_string(root.join("deploy/deploy.md"))
            .expect("log")
            .contains("Dry run: true")
    );
    let r = rt
        .block_on(pm.execute_project_workflow(
            "web",
            "deploy",
            params(json!({"program": "touch", "args": ["deployed"], "dry_run": false})),
        ))
        .expect("ran");
    assert!(r.succeeded());
    assert!(root.join("deployed").exists());
    let m = pm.get_project("web").expect("project").metrics;
    assert_eq!(
        (m["workflow_runs"].clone(), m["workflows_failed"].clone()),
        (json!(4), json!(1))
    );
    // A workflow the project does not have.
    let e = rt
        .block_on(pm.execute_project_workflow("web", "ai-analysis", Map::new()))
        .expect_err("not available");
    assert!(
        e.to_string()
            .contains("its workflows: build-and-test, deploy"),
        "{e}"
    );
}

#[test]
fn bad_names_fail_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pm = pm(dir.path());
    std::fs::create_dir_all(dir.path().join("projects")).expect("mkdir");
    let before = tree(dir.path());
    let long = "a".repeat(4096);
    for name in [
        "../x",
        "/etc/x",
        "a/../../x",
        "",
        long.as_str(),
        "a\0b",
        ".hidden",
        "a b",
        // `<projects_dir>/archives` holds the archives of every project.
        "archives",
    ] {
        let e = pm
            .create_project(name, Some("ai_analysis"), None, CreateOptions::default())
            .expect_err(name);
        assert_eq!(
            e.error_code(),
            ErrorCode::InvalidParameters,
            "{name:?}: {e}"
        );
        assert!(
            !e.to_string().contains(&long),
            "a long name is shortened in the message"
        );
        assert_eq!(tree(dir.path()), before, "{name:?} changed the file system");
    }
}

#[test]
fn unsafe_templates_and_destinations_fail_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(templates.join("linky/files")).expect("mkdir");
    std::fs::write(templates.join("linky/files/ok.txt"), "fine").expect("write");
    std::os::unix::fs::symlink("/etc/passwd", templates.join("linky/files/passwd"))
        .expect("symlink");
    std::fs::write(
        templates.join("linky.json"),
        r#"{"name": "linky", "type": "custom", "directory_structure": ["src/"], "template_files": {"files/*": "src"}}"#,
    )
    .expect("write");
    std::fs::write(
        templates.join("dotdot.json"),
        r#"{"name": "dotdot", "type": "custom", "directory_structure": ["src/", "../escaped/"]}"#,
    )
    .expect("write");
    std::fs::create_dir_all(dir.path().join("projects")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("elsewhere")).expect("mkdir");
    std::os::unix::fs::symlink(
        dir.path().join("elsewhere"),
        dir.path().join("projects/link"),
    )
    .expect("symlink");
    std::fs::create_dir_all(dir.path().join("projects/full")).expect("mkdir");
    std::fs::write(dir.path().join("projects/full/keep.txt"), "mine").expect("write");
    let pm = pm(dir.path());
    assert!(
        pm.load_problems()
            .iter()
            .any(|p| p.contains("dotdot") && p.contains("`../escaped/` contains `..`")),
        "{:?}",
        pm.load_problems()
    );
    let before = tree(dir.path());

    let e = pm
        .create_project("a", Some("linky"), None, CreateOptions::default())
        .expect_err("link in template");
    assert_eq!(e.error_code(), ErrorCode::PermissionDenied, "{e}");
    assert!(
        e.to_string().contains("symbolic link `files/passwd`"),
        "{e}"
    );
    assert_eq!(tree(dir.path()), before);

    let e = pm
        .create_project("b", Some("dotdot"), None, CreateOptions::default())
        .expect_err("dotdot");
    assert!(e.to_string().contains("contains `..`"), "{e}");
    assert_eq!(tree(dir.path()), before);

    let e = pm
        .create_project("link", Some("ai_analysis"), None, CreateOptions::default())
        .expect_err("symlink target");
    assert_eq!(e.error_code(), ErrorCode::PermissionDenied, "{e}");
    assert_eq!(tree(dir.path()), before);

    let e = pm
        .create_project("full", Some("ai_analysis"), None, CreateOptions::default())
        .expect_err("non-empty");
    assert_eq!(e.error_code(), ErrorCode::ProjectExists, "{e}");
    assert_eq!(tree(dir.path()), before);

    let e = pm
        .create_project("c", Some("nosuch"), None, CreateOptions::default())
        .expect_err("unknown template");
    assert_eq!(e.error_code(), ErrorCode::NotFound);
    assert!(
        e.to_string()
            .contains("available templates: ai_analysis, data_pipeline, linky, web_application"),
        "{e}"
    );
    assert_eq!(tree(dir.path()), before);

    let e = pm
        .create_project(
            "d",
            Some("ai_analysis"),
            Some(&dir.path().join("missing/d")),
            CreateOptions::default(),
        )
        .expect_err("no parent");
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert_eq!(tree(dir.path()), before);
    assert!(pm.list_projects().is_empty());
}

#[test]
fn a_template_copies_its_files_as_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(templates.join("mine/files")).expect("mkdir");
    std::fs::write(
        templates.join("mine/files/setup.sh"),
        "#!/bin/sh\ntouch PWNED\n",
    )
    .expect("write");
    std::fs::write(
        templates.join("mine.json"),
        r#"{"name": "mine", "type": "research", "directory_structure": ["scripts/"], "template_files": {"files/*.sh": "scripts"}}"#,
    )
    .expect("write");
    let pm = pm(dir.path());
    let p = pm
        .create_project("r", Some("mine"), None, CreateOptions::default())
        .expect("created");
    assert_eq!(p.project_type, orch_model::ProjectType::Research);
    let root = dir.path().join("projects/r");
    assert_eq!(
        std::fs::read_to_string(root.join("scripts/setup.sh")).expect("copied"),
        "#!/bin/sh\ntouch PWNED\n"
    );
    assert!(
        !root.join("PWNED").exists() && !dir.path().join("PWNED").exists(),
        "nothing from a template runs"
    );
    assert!(
        root.join("scripts/README.md").is_file(),
        "docs for every directory when nested_docs is not given"
    );
}

#[test]
fn projects_elsewhere_are_remembered_and_names_are_unique() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pm = pm(dir.path());
    let elsewhere = dir.path().join("work/site");
    std::fs::create_dir_all(elsewhere.parent().expect("parent")).expect("mkdir");
    pm.create_project("site", None, Some(&elsewhere), CreateOptions::default())
        .expect("created");
    assert!(elsewhere.join(".orch/project.json").is_file());
    let again = self::pm(dir.path());
    assert_eq!(again.list_projects(), vec!["site"]);
    let e = again
        .create_project("site", None, None, CreateOptions::default())
        .expect_err("duplicate");
    assert_eq!(e.error_code(), ErrorCode::ProjectExists);
    assert!(again.delete_project("site", false).expect("deleted"));
    assert!(elsewhere.is_dir(), "files stay without remove_files");
    assert!(
        self::pm(dir.path()).list_projects().is_empty(),
        "and it does not come back"
    );
}

#[test]
fn the_original_project_file_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = dir.path().join("projects/old/.codomyrmex");
    std::fs::create_dir_all(&old).expect("mkdir");
    std::fs::write(
        old.join("project.json"),
        r#"{"name": "old", "description": "", "type": "custom", "path": "/x", "status": "active", "version": "1.0.0", "template": null, "config": {}, "workflows": [], "active_workflows": [], "required_modules": [], "author": "", "tags": [], "created_at": "2025-01-01T00:00:00+00:00", "updated_at": "2025-01-01T00:00:00+00:00", "milestones": {}, "metrics": {}}"#,
    )
    .expect("write");
    let pm = pm(dir.path());
    let p = pm.get_project("old").expect("read");
    assert_eq!(p.status, ProjectStatus::Active);
    // The file says `"path": "/x"`; the project is where the file was found,
    // so nothing is ever written to or run in `/x`.
    assert_eq!(
        std::path::Path::new(&p.path),
        std::path::absolute(dir.path().join("projects/old")).expect("absolute")
    );
    pm.add_project_milestone("old", "seen", &json!({"ok": true}))
        .expect("milestone");
    assert!(!std::path::Path::new("/x/.orch").exists());
    assert!(
        std::fs::read_to_string(dir.path().join("projects/old/.codomyrmex/project.json"))
            .expect("saved beside it")
            .contains("\"seen\"")
    );
}

#[test]
fn a_project_file_with_a_bad_name_is_reported_not_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("projects/evil/.orch");
    std::fs::create_dir_all(&bad).expect("mkdir");
    std::fs::write(
        bad.join("project.json"),
        r#"{"name": "../escape", "description": "", "type": "custom", "path": "/tmp", "status": "active", "version": "1.0.0", "template": null, "config": {}, "workflows": [], "active_workflows": [], "required_modules": [], "author": "", "tags": [], "created_at": "2025-01-01T00:00:00+00:00", "updated_at": "2025-01-01T00:00:00+00:00", "milestones": {}, "metrics": {}}"#,
    )
    .expect("write");
    let pm = pm(dir.path());
    assert!(pm.list_projects().is_empty());
    let problems = pm.load_problems();
    assert!(
        problems.len() == 1 && problems[0].contains("not loaded"),
        "{problems:?}"
    );
}

#[test]
fn metrics_summary_archive_and_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pm = pm(dir.path());
    pm.create_project("a", Some("ai_analysis"), None, CreateOptions::default())
        .expect("a");
    pm.create_project("b", Some("data_pipeline"), None, CreateOptions::default())
        .expect("b");
    pm.update_project_metrics("a", &params(json!({"coverage": 80.5, "files": 3})))
        .expect("set");
    pm.update_project_metrics("a", &params(json!({"coverage": 82.0})))
        .expect("set");
    pm.increment_project_metrics("a", &params(json!({"files": 2, "reviews": 1})))
        .expect("inc");
    let m = pm.get_project("a").expect("a").metrics;
    assert_eq!(
        Value::Object(m),
        json!({"coverage": 82.0, "files": 5, "reviews": 1})
    );
    let e = pm
        .increment_project_metrics("a", &params(json!({"coverage": 1})))
        .expect_err("not a counter");
    assert!(matches!(e, OrchestrationError::InvalidParameters { .. }));
    let e = pm
        .update_project_metrics("zzz", &Map::new())
        .expect_err("unknown");
    assert!(e.to_string().contains("known projects: a, b"), "{e}");

    let s = pm.get_projects_summary();
    assert_eq!(s.total_projects, 2);
    assert_eq!(s.by_type.get("ai_analysis"), Some(&1));
    assert_eq!(s.by_status.get("planning"), Some(&2));
    assert_eq!(
        s.recent_activity[0].name, "a",
        "the most recently changed first"
    );

    let archive = pm.archive_project("a", None).expect("archived");
    assert_eq!(archive, dir.path().join("projects/archives/a.tar.gz"));
    let f = std::fs::File::open(&archive).expect("open");
    let mut names: Vec<String> = tar::Archive::new(flate2::read::GzDecoder::new(f))
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
        })
        .collect();
    names.sort();
    assert!(
        names.contains(&"a/README.md".to_owned())
            && names.contains(&"a/.orch/project.json".to_owned()),
        "{names:?}"
    );
    assert_eq!(
        pm.get_project("a").expect("a").status,
        ProjectStatus::Archived
    );

    assert!(pm.delete_project("b", true).expect("deleted"));
    assert!(!dir.path().join("projects/b").exists());
    assert!(!pm.delete_project("b", true).expect("second time"));
}

#[test]
fn with_a_store_every_project_change_is_recorded_there() {
    use orch_model::{RecordKind, Store};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = std::sync::Arc::new(orch_tasks::MemoryStore::new());
    let pm = ProjectManager::builder(dir.path().join("projects"))
        .store(store.clone())
        .build()
        .expect("manager");
    pm.create_project("kept", Some("ai_analysis"), None, CreateOptions::default())
        .expect("kept");
    pm.create_project("gone", None, None, CreateOptions::default())
        .expect("gone");
    pm.add_project_milestone("kept", "first", &json!({"score": 1}))
        .expect("milestone");
    assert!(pm.delete_project("gone", true).expect("deleted"));
    pm.flush_records();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let records = rt
        .block_on(store.records(RecordKind::Project))
        .expect("records");
    assert_eq!(
        records.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        vec!["kept"]
    );
    let kept = &records[0].data;
    assert!(kept["milestones"]["first"].is_object(), "{kept}");
    assert_eq!(
        std::path::Path::new(kept["path"].as_str().expect("path")),
        dir.path().join("projects/kept")
    );
}

/// Issue 10 item 22: `update_project` changes a project's status (paused,
/// completed, failed) and fields, on disk and in memory; `archived` stays
/// `archive_project`'s.
#[test]
fn update_project_changes_status_and_fields_and_keeps_them() {
    use orch_projects::ProjectUpdate;
    let dir = tempfile::tempdir().expect("tempdir");
    let pm = pm(dir.path());
    let created = pm
        .create_project("a", None, None, CreateOptions::default())
        .expect("a");
    assert_eq!(created.status, ProjectStatus::Planning);
    for status in [
        ProjectStatus::Active,
        ProjectStatus::Paused,
        ProjectStatus::Completed,
        ProjectStatus::Failed,
        ProjectStatus::Paused,
    ] {
        let p = pm
            .update_project(
                "a",
                ProjectUpdate {
                    status: Some(status),
                    ..ProjectUpdate::default()
                },
            )
            .expect("a status change");
        assert_eq!(p.status, status);
    }
    let p = pm
        .update_project(
            "a",
            ProjectUpdate {
                description: Some("now described".into()),
                version: Some("1.1.0".into()),
                author: Some("Ada".into()),
                tags: Some(vec!["nlp".into()]),
                config: params(json!({"ai": {"model": "local"}})),
                ..ProjectUpdate::default()
            },
        )
        .expect("fields");
    assert!(p.updated_at > created.updated_at);
    assert_eq!(
        (
            p.status,
            p.description.as_str(),
            p.version.as_str(),
            p.author.as_str()
        ),
        (ProjectStatus::Paused, "now described", "1.1.0", "Ada")
    );
    assert_eq!(p.tags, vec!["nlp"]);
    assert_eq!(p.config["ai"], json!({"model": "local"}));
    // Written to the project file: a new manager reads the same.
    assert_eq!(self::pm(dir.path()).get_project("a"), Some(p.clone()));
    // Nothing given, nothing written.
    let same = pm
        .update_project("a", ProjectUpdate::default())
        .expect("no change");
    assert_eq!(same.updated_at, p.updated_at);

    let e = pm
        .update_project(
            "a",
            ProjectUpdate {
                status: Some(ProjectStatus::Archived),
                ..ProjectUpdate::default()
            },
        )
        .expect_err("archived is archive_project's");
    assert_eq!(e.error_code(), ErrorCode::InvalidParameters);
    assert!(e.to_string().contains("archive_project"), "{e}");
    let e = pm
        .update_project(
            "a",
            ProjectUpdate {
                version: Some(" ".into()),
                ..ProjectUpdate::default()
            },
        )
        .expect_err("empty version");
    assert!(e.to_string().contains("version is empty"), "{e}");
    let e = pm
        .update_project("zzz", ProjectUpdate::default())
        .expect_err("unknown");
    assert_eq!(e.error_code(), ErrorCode::NotFound);
    assert_eq!(
        pm.get_project("a").expect("a").status,
        ProjectStatus::Paused,
        "refused updates change nothing"
    );
    pm.archive_project("a", None).expect("archived");
    let e = pm
        .update_project(
            "a",
            ProjectUpdate {
                status: Some(ProjectStatus::Active),
                ..ProjectUpdate::default()
            },
        )
        .expect_err("archived projects keep their status");
    assert_eq!(e.error_code(), ErrorCode::InvalidState);
}

/// Issue 10 item 22: `list_projects` by status, type and tag.
#[test]
fn projects_are_listed_by_status_type_and_tag() {
    use orch_model::ProjectType;
    use orch_projects::{ProjectFilter, ProjectUpdate};
    let dir = tempfile::tempdir().expect("tempdir");
    let pm = pm(dir.path());
    pm.create_project(
        "a",
        Some("ai_analysis"),
        None,
        CreateOptions {
            tags: vec!["nlp".into()],
            ..CreateOptions::default()
        },
    )
    .expect("a");
    pm.create_project("b", Some("data_pipeline"), None, CreateOptions::default())
        .expect("b");
    pm.create_project(
        "c",
        Some("ai_analysis"),
        None,
        CreateOptions {
            tags: vec!["nlp".into(), "vision".into()],
            ..CreateOptions::default()
        },
    )
    .expect("c");
    pm.update_project(
        "c",
        ProjectUpdate {
            status: Some(ProjectStatus::Paused),
            ..ProjectUpdate::default()
        },
    )
    .expect("paused");
    let list = |f: ProjectFilter| pm.list_projects_filtered(&f);
    assert_eq!(list(ProjectFilter::default()), pm.list_projects());
    assert_eq!(
        list(ProjectFilter {
            status: Some(ProjectStatus::Paused),
            ..ProjectFilter::default()
        }),
        vec!["c"]
    );
    assert_eq!(
        list(ProjectFilter {
            project_type: Some(ProjectType::AiAnalysis),
            ..ProjectFilter::default()
        }),
        vec!["a", "c"]
    );
    assert_eq!(
        list(ProjectFilter {
            project_type: Some(ProjectType::AiAnalysis),
            status: Some(ProjectStatus::Planning),
            tag: Some("nlp".into()),
        }),
        vec!["a"]
    );
    assert_eq!(
        list(ProjectFilter {
            tag: Some("vision".into()),
            ..ProjectFilter::default()
        }),
        vec!["c"]
    );
    assert!(
        list(ProjectFilter {
            status: Some(ProjectStatus::Failed),
            ..ProjectFilter::default()
        })
        .is_empty()
    );
}

/// Issue 10 item 22: `create_project_from_workflow` creates the project,
/// runs the workflow in it and records the success as a milestone.
#[test]
fn create_project_from_workflow_creates_runs_and_records_a_milestone() {
    use orch_workflows::ExecuteOptions;
    let dir = tempfile::tempdir().expect("tempdir");
    let pm = pm(dir.path());
    let rt = rt();
    let out = rt
        .block_on(pm.create_project_from_workflow(
            "analysis",
            "ai-analysis",
            None,
            None,
            CreateOptions::default(),
            ExecuteOptions::default(),
        ))
        .expect("created");
    assert_eq!(out.project.template.as_deref(), Some("ai_analysis"));
    let report = out.run.expect("the run started");
    assert!(report.succeeded(), "{report:?}");
    let m = &out.project.milestones["workflow_ai-analysis_completed"];
    assert_eq!(m["workflow"], "ai-analysis");
    assert_eq!(m["success"], true);
    assert_eq!(m["run_id"], report.run_id.to_string());
    assert!(m["execution_time"].as_f64().is_some() && m["completed_at"].is_string());
    assert_eq!(out.project.status, ProjectStatus::Active);
    assert!(
        dir.path()
            .join("projects/analysis/reports/analysis.md")
            .is_file()
    );

    // A workflow the template does not have: refused, nothing created.
    let e = rt
        .block_on(pm.create_project_from_workflow(
            "nothing",
            "deploy",
            Some("ai_analysis"),
            None,
            CreateOptions::default(),
            ExecuteOptions::default(),
        ))
        .expect_err("not in the template");
    assert_eq!(e.error_code(), ErrorCode::InvalidParameters);
    assert!(
        e.to_string()
            .contains("its workflows: ai-analysis, build-and-test"),
        "{e}"
    );
    let e = rt
        .block_on(pm.create_project_from_workflow(
            "nothing",
            "deploy",
            Some("no_such_template"),
            None,
            CreateOptions::default(),
            ExecuteOptions::default(),
        ))
        .expect_err("unknown template");
    assert_eq!(e.error_code(), ErrorCode::NotFound);
    assert!(!dir.path().join("projects/nothing").exists());
    assert!(pm.get_project("nothing").is_none());

    // A run that cannot start leaves the project, says why, and records no milestone.
    let out = rt
        .block_on(pm.create_project_from_workflow(
            "typo",
            "ai-analysis",
            None,
            None,
            CreateOptions::default(),
            ExecuteOptions {
                params: params(json!({"no_such_parameter": 1})),
                ..ExecuteOptions::default()
            },
        ))
        .expect("the project is created");
    let e = out.run.expect_err("undeclared parameter");
    assert!(e.to_string().contains("no_such_parameter"), "{e}");
    assert!(out.project.milestones.is_empty());
    assert!(pm.get_project("typo").is_some());
}
