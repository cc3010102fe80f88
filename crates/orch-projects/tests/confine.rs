//! Project creation never writes through a symbolic link (issue 10, item 2):
//! not through a link in `--path`, not when the staging directory's
//! subdirectories are swapped for links to the outside while it is filled.

use orch_model::{ErrorCode, OrchestrationError};
use orch_projects::{CreateOptions, ProjectManager};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

fn pm(dir: &Path) -> ProjectManager {
    ProjectManager::builder(dir.join("projects"))
        .build()
        .expect("manager")
}

/// Every path under `root` (relative), links marked with `@`, sorted.
fn tree(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| {
            let mark = if e.path_is_symlink() { "@" } else { "" };
            format!(
                "{}{mark}",
                e.path().strip_prefix(root).unwrap_or(e.path()).display()
            )
        })
        .collect();
    v.sort();
    v
}

/// Runs `f` with the current directory set to `dir`, restoring it after.
/// Only this file's one test changes the current directory.
fn in_dir<T>(dir: &Path, f: impl FnOnce() -> T) -> T {
    let old = std::env::current_dir().expect("cwd");
    std::env::set_current_dir(dir).expect("chdir");
    let out = f();
    std::env::set_current_dir(old).expect("chdir back");
    out
}

#[test]
fn a_relative_path_through_a_link_is_refused() {
    let work = tempfile::tempdir().expect("work");
    let outside = tempfile::tempdir().expect("outside");
    let w = work.path();
    std::fs::create_dir_all(w.join("a/real")).expect("a/real");
    std::os::unix::fs::symlink(outside.path(), w.join("a/linkdir")).expect("link");
    let pm = pm(w);
    let before = tree(w);
    let results: Vec<(&str, Result<orch_model::Project, OrchestrationError>)> = in_dir(w, || {
        [
            "a/linkdir/sub",
            "a/linkdir",
            "./a/linkdir/sub/deeper",
            "../escaped",
        ]
        .into_iter()
        .map(|p| {
            (
                p,
                pm.create_project(
                    "x",
                    Some("ai_analysis"),
                    Some(Path::new(p)),
                    CreateOptions::default(),
                ),
            )
        })
        .collect()
    });
    for (p, r) in &results {
        let e = r.as_ref().expect_err(p);
        assert_eq!(e.error_code(), ErrorCode::PermissionDenied, "{p}: {e}");
        let msg = e.to_string();
        assert!(
            msg.contains("symbolic link") || msg.contains("`..`"),
            "{p}: {msg}"
        );
    }
    assert!(
        tree(outside.path()) == [""],
        "written outside: {:?}",
        tree(outside.path())
    );
    assert!(!w.parent().expect("parent").join("escaped").exists());
    assert_eq!(tree(w), before, "nothing is left behind");
    // A relative path without links works as before.
    let p = in_dir(w, || {
        pm.create_project(
            "ok",
            Some("ai_analysis"),
            Some(Path::new("a/real/ok")),
            CreateOptions::default(),
        )
    })
    .expect("created");
    assert_eq!(PathBuf::from(&p.path), w.join("a/real/ok"));
    assert!(w.join("a/real/ok/src/README.md").is_file());
    assert!(pm.get_project("ok").is_some() && pm.get_project("x").is_none());
}

/// Exchanges the staging directories' subdirectories with links to `outside`, over and over.
fn swap_staging_dirs(projects: PathBuf, outside: PathBuf, stop: &AtomicBool, swaps: &AtomicU64) {
    const SUBDIRS: [&str; 6] = ["src", "data", "output", "reports", "config", ".orch"];
    while !stop.load(Ordering::Relaxed) {
        let Ok(entries) = std::fs::read_dir(&projects) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            if !e.file_name().to_string_lossy().starts_with(".orch-new-") {
                continue;
            }
            let staging = e.path();
            for d in SUBDIRS {
                let link = staging.join(format!("swap-{d}"));
                let _ = std::os::unix::fs::symlink(&outside, &link);
                if rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    staging.join(d),
                    rustix::fs::CWD,
                    &link,
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .is_ok()
                {
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

#[test]
fn a_staging_directory_raced_with_links_writes_nothing_outside() {
    let work = tempfile::tempdir().expect("work");
    let outside = tempfile::tempdir().expect("outside");
    let pm = pm(work.path());
    std::fs::create_dir_all(work.path().join("projects")).expect("projects");
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (stop, swaps) = (Arc::clone(&stop), Arc::clone(&swaps));
        let (projects, out) = (work.path().join("projects"), outside.path().to_path_buf());
        std::thread::spawn(move || swap_staging_dirs(projects, out, &stop, &swaps))
    };
    let mut created = 0usize;
    let mut i = 0usize;
    // Until the race has been run often enough (bounded, whatever the scheduling).
    while (i < 100 || swaps.load(Ordering::Relaxed) < 100) && i < 3000 {
        match pm.create_project(
            &format!("p{i}"),
            Some("ai_analysis"),
            None,
            CreateOptions::default(),
        ) {
            Ok(_) => created += 1,
            Err(e) => assert!(
                matches!(
                    e.error_code(),
                    ErrorCode::PermissionDenied | ErrorCode::IoError
                ),
                "{e}"
            ),
        }
        i += 1;
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().expect("swapper");
    assert!(
        swaps.load(Ordering::Relaxed) > 0,
        "the swapper never ran ({i} creations, {created} created)"
    );
    let out = tree(outside.path());
    assert!(
        out == [""],
        "{} entries written outside in {i} creations: {:?}",
        out.len() - 1,
        &out[..out.len().min(10)]
    );
}
