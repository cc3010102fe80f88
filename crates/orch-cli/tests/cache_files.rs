//! The shipped data pipeline's row count is cached on the merged file's contents (`cache.files`): run again on the same inputs it is served from the store's cache; after an input changes (so the merged file does) it runs again and counts the new row, where `cache: true` alone served the old count.

mod common;

use common::run;
use std::path::Path;

/// Copies `examples/` (the definition and its data) into `dir`.
fn copy_examples(dir: &Path) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::create_dir_all(dir.join("examples/data")).expect("mkdir");
    for f in [
        "data-pipeline.toml",
        "data/customers.csv",
        "data/orders-2026-11-23.csv",
    ] {
        std::fs::copy(repo.join("examples").join(f), dir.join("examples").join(f)).expect("copy");
    }
}

/// Runs the pipeline; returns whether `count_rows` was served from the cache and what it counted.
fn pipeline(dir: &Path) -> (bool, String) {
    let (code, out, err) = run(dir, &["run", "examples/data-pipeline.toml"]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, list, _) = run(dir, &["runs", "list", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(&list).expect("JSON");
    let id = runs[0]["run_id"].as_str().expect("run id").to_owned();
    let (_, show, _) = run(dir, &["runs", "show", &id, "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&show).expect("JSON");
    let count = shown["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["name"] == "count_rows")
        .expect("count_rows")
        .clone();
    (
        count["cached"] == true,
        count["result"]["data"]["stdout"]
            .as_str()
            .unwrap_or_default()
            .trim()
            .to_owned(),
    )
}

#[test]
fn the_pipelines_count_misses_after_its_input_changes_and_hits_when_unchanged() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    copy_examples(d);
    let (cached, rows) = pipeline(d);
    assert!(!cached, "the first run counts");
    assert_eq!(rows, "12");
    assert_eq!(
        pipeline(d),
        (true, "12".to_owned()),
        "unchanged inputs: served"
    );
    let orders = d.join("examples/data/orders-2026-11-23.csv");
    let mut text = std::fs::read_to_string(&orders).expect("orders");
    text.push_str("o9999,c1,1.00\n");
    std::fs::write(&orders, text).expect("write");
    assert_eq!(
        pipeline(d),
        (false, "13".to_owned()),
        "a changed merged file: counted again"
    );
    assert_eq!(pipeline(d), (true, "13".to_owned()));
    let published =
        std::fs::read_to_string(d.join("target/data-pipeline/published/2026-11-23.csv"))
            .expect("published");
    assert_eq!(published.lines().count(), 14, "header and 13 rows");
}
