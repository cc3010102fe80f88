//! `cache: {files: [...], ttl: ...}`: the contents of the matched files are part of a step's cache key (a changed or new file is a miss, unchanged files a hit), and an entry older than the ttl is not served (the cache's clock is moved, nothing waits); `cache: true` keeps its meaning.

mod common;

use common::{rt, yaml};
use orch_tasks::{ActionRegistry, MemoryCache, ResultCache, RunOptions, RunReport, run_workflow};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const FLOW: &str = r#"
name: rows
steps:
  - name: count
    module: shell
    action: script
    cache: { files: ["data/*.csv"], ttl: 1h }
    parameters:
      script: 'echo run >> count.log; cat data/*.csv | wc -l'
  - name: plain
    module: shell
    action: script
    cache: true
    parameters:
      script: 'echo run >> plain.log; cat data/*.csv | wc -l'
"#;

fn run(dir: &Path, cache: &Arc<MemoryCache>) -> RunReport {
    let cache: Arc<dyn ResultCache> = cache.clone();
    let opts = RunOptions {
        work_dir: dir.to_path_buf(),
        cache: Some(cache),
        ..RunOptions::default()
    };
    rt().block_on(run_workflow(
        &yaml(FLOW),
        &ActionRegistry::with_builtins(),
        opts,
        None,
    ))
    .expect("ran")
}

/// How many times each step ran, from the logs they append to.
fn runs(dir: &Path) -> (usize, usize) {
    let n = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .unwrap_or_default()
            .lines()
            .count()
    };
    (n("count.log"), n("plain.log"))
}

fn cached(r: &RunReport, i: usize) -> bool {
    r.steps[i].result.as_ref().is_some_and(|r| r.cached)
}

#[test]
fn a_file_keyed_cache_misses_when_a_file_changes_and_expires_after_its_ttl() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    std::fs::create_dir(d.join("data")).expect("mkdir");
    std::fs::write(d.join("data/a.csv"), "1\n2\n").expect("write");
    let cache = Arc::new(MemoryCache::default());

    let first = run(d, &cache);
    assert!(!cached(&first, 0) && !cached(&first, 1));
    assert_eq!(runs(d), (1, 1));

    let same = run(d, &cache);
    assert!(cached(&same, 0), "unchanged files: a hit");
    assert!(cached(&same, 1));
    assert_eq!(runs(d), (1, 1));
    assert_eq!(
        same.steps[0].result.as_ref().map(|r| &r.data),
        first.steps[0].result.as_ref().map(|r| &r.data),
        "the stored result"
    );

    std::fs::write(d.join("data/a.csv"), "1\n2\n3\n").expect("write");
    let changed = run(d, &cache);
    assert!(!cached(&changed, 0), "a changed file: a miss");
    assert_eq!(
        changed.steps[0].result.as_ref().expect("ran").data["stdout"],
        "3\n"
    );
    // `cache: true` does not look at files: it serves the old count.
    assert!(cached(&changed, 1));
    assert_eq!(
        changed.steps[1].result.as_ref().expect("served").data["stdout"],
        "2\n"
    );
    assert_eq!(runs(d), (2, 1));

    std::fs::write(d.join("data/b.csv"), "4\n").expect("write");
    let added = run(d, &cache);
    assert!(!cached(&added, 0), "a new file: a miss");
    assert_eq!(runs(d), (3, 1));
    assert!(cached(&run(d, &cache), 0));
    assert_eq!(runs(d), (3, 1));

    // Two hours later (by the cache's clock), the 1 h entry has expired;
    // `cache: true` has no ttl.
    cache.age(Duration::from_secs(2 * 3600));
    let expired = run(d, &cache);
    assert!(!cached(&expired, 0), "older than its ttl: a miss");
    assert!(cached(&expired, 1));
    assert_eq!(runs(d), (4, 1));
    assert!(cached(&run(d, &cache), 0), "stored again: a hit");
}

#[test]
fn a_match_outside_the_work_directory_runs_the_step_without_the_cache() {
    let dir = tempfile::tempdir().expect("dir");
    let outside = tempfile::tempdir().expect("dir");
    let d = dir.path();
    std::fs::create_dir(d.join("data")).expect("mkdir");
    std::fs::write(outside.path().join("x.csv"), "1\n").expect("write");
    std::os::unix::fs::symlink(outside.path().join("x.csv"), d.join("data/x.csv"))
        .expect("symlink");
    let cache = Arc::new(MemoryCache::default());
    for n in 1..=2 {
        let r = run(d, &cache);
        assert!(!cached(&r, 0), "never served");
        assert_eq!(runs(d).0, n, "it runs every time");
    }
}
