//! `code.stats`, `data.aggregate`, `chart.bar`, `chart.line` and
//! `report.markdown` resolve their paths beneath the work directory without
//! following links, at the moment they use them (issue 10, item 2): a link in
//! a path is refused, a hard-linked file is not read, and a directory swapped
//! for a link to the outside while the actions run never lets one read or
//! write outside.

mod common;

use common::{Swapper, allowed_failure, names};
use orch_tasks::{ActionContext, ActionError, ActionRegistry};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const ROUNDS: usize = 400;
const OUTSIDE_SECRET: &str = "OUTSIDE-SECRET";

/// Every path under `dir` (relative), links marked with `@`, with each file's content.
fn snapshot(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let e = e.expect("entry");
            let rel = e
                .path()
                .strip_prefix(dir)
                .expect("beneath")
                .display()
                .to_string();
            let t = e.file_type().expect("type");
            if t.is_symlink() {
                out.insert(format!("{rel}@"));
            } else if t.is_dir() {
                out.insert(format!("{rel}/"));
                stack.push(e.path());
            } else {
                let content = std::fs::read(e.path()).expect("read");
                out.insert(format!("{rel}={}", String::from_utf8_lossy(&content)));
            }
        }
    }
    out
}

struct Setup {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    work: PathBuf,
    outside: PathBuf,
    ctx: ActionContext,
    registry: ActionRegistry,
}

/// A work directory with `d/` (Rust sources and a CSV file) and `lnk`, a
/// link to the outside directory, which holds Python sources, a CSV file
/// of another name and a secret.
fn setup() -> Setup {
    let w = tempfile::tempdir().expect("work");
    let o = tempfile::tempdir().expect("outside");
    let (work, outside) = (w.path().to_path_buf(), o.path().to_path_buf());
    std::fs::create_dir_all(work.join("d/src")).expect("d");
    std::fs::write(work.join("d/src/main.rs"), "fn main() {}\n// c\n").expect("rs");
    std::fs::write(work.join("d/inside.csv"), "k,v\na,1\nb,2\n").expect("csv");
    std::fs::write(outside.join("secret.py"), "x = 1\ny = 2\nz = 3\n").expect("py");
    std::fs::write(outside.join("outside.csv"), "k,v\nx,100\n").expect("csv");
    std::fs::write(outside.join("secret.txt"), OUTSIDE_SECRET).expect("secret");
    std::os::unix::fs::symlink(&outside, work.join("lnk")).expect("link");
    let ctx = ActionContext::detached("confine", &work);
    Setup {
        _dirs: (w, o),
        work,
        outside,
        ctx,
        registry: ActionRegistry::with_builtins(),
    }
}

impl Setup {
    async fn run(&self, module: &str, action: &str, params: Value) -> Result<Value, ActionError> {
        let a = self
            .registry
            .get(module, action)
            .unwrap_or_else(|| panic!("{module}.{action} is registered"));
        a.run(params, &self.ctx).await
    }
}

fn chart(output: &str) -> Value {
    json!({"data": {"a": 1, "b": 2}, "title": "t", "output": output})
}

fn report(output: &str) -> Value {
    json!({"output": output, "title": "r", "template": "n = {{n}}", "values": {"n": 1}})
}

#[tokio::test]
async fn a_link_in_a_path_is_refused_and_nothing_outside_is_touched() {
    let s = setup();
    let before = snapshot(&s.outside);
    let cases: Vec<(&str, &str, Value)> = vec![
        ("code", "stats", json!({"path": "lnk"})),
        ("code", "stats", json!({"path": "lnk/."})),
        ("code", "stats", json!({"path": "/tmp"})),
        ("code", "stats", json!({"path": "d/../.."})),
        (
            "data",
            "aggregate",
            json!({"input": "lnk", "output": "out"}),
        ),
        (
            "data",
            "aggregate",
            json!({"input": "d", "output": "lnk/out"}),
        ),
        (
            "data",
            "aggregate",
            json!({"input": "d", "output": "/tmp/o"}),
        ),
        ("data", "aggregate", json!({"input": "..", "output": "out"})),
        ("chart", "bar", chart("lnk/c.svg")),
        ("chart", "line", chart("lnk/sub/c.svg")),
        ("chart", "bar", chart("/tmp/c.svg")),
        ("chart", "line", chart("d/../../c.svg")),
        ("report", "markdown", report("lnk/r.md")),
        ("report", "markdown", report("lnk/new/r.md")),
        ("report", "markdown", report("/tmp/r.md")),
        ("report", "markdown", report("../r.md")),
    ];
    for (module, action, params) in cases {
        let e = s
            .run(module, action, params.clone())
            .await
            .expect_err(&format!("{module}.{action} {params}"));
        assert_eq!(
            e.error_type, "PermissionDenied",
            "{module}.{action} {params}: {e}"
        );
        assert!(!e.retryable, "{module}.{action} {params}");
        assert!(
            e.message.contains("symbolic link")
                || e.message.contains("`..`")
                || e.message.contains("absolute"),
            "{module}.{action} {params}: {e}"
        );
    }
    // A link at the end of an output path is refused too, not replaced.
    std::os::unix::fs::symlink(s.outside.join("secret.txt"), s.work.join("d/c.svg"))
        .expect("file link");
    std::os::unix::fs::symlink(s.outside.join("secret.txt"), s.work.join("d/r.md"))
        .expect("file link");
    for (module, action, params) in [
        ("chart", "bar", chart("d/c.svg")),
        ("report", "markdown", report("d/r.md")),
    ] {
        let e = s
            .run(module, action, params.clone())
            .await
            .expect_err(&params.to_string());
        assert_eq!(e.error_type, "PermissionDenied", "{params}: {e}");
    }
    assert_eq!(snapshot(&s.outside), before, "the outside changed");
    // Nothing was created in the work directory either.
    assert_eq!(
        names(&s.work),
        BTreeSet::from(["d".to_owned(), "lnk".to_owned()])
    );
}

#[tokio::test]
async fn links_and_hard_links_inside_the_tree_are_not_read() {
    let s = setup();
    // A link to the outside directory, a link to an outside file, and a hard
    // link to an outside file, all inside the measured tree.
    std::os::unix::fs::symlink(&s.outside, s.work.join("d/src/out")).expect("dir link");
    std::os::unix::fs::symlink(s.outside.join("secret.py"), s.work.join("d/src/s.py"))
        .expect("file link");
    std::fs::hard_link(s.outside.join("secret.py"), s.work.join("d/src/h.py")).expect("hard link");
    let v = s
        .run("code", "stats", json!({"path": "d"}))
        .await
        .expect("stats");
    assert_eq!(v["files"], 1, "{v}");
    assert_eq!(v["code_by_language"], json!({"Rust": 1}), "{v}");
    assert_eq!(
        v["skipped"],
        json!({"unknown_language": 1, "too_large": 0, "not_text": 0}),
        "{v}"
    );

    // data.aggregate: a linked CSV file is not an input; a hard-linked one is refused.
    std::fs::create_dir(s.work.join("in")).expect("in");
    std::fs::write(s.work.join("in/a.csv"), "k,v\na,1\n").expect("a.csv");
    std::os::unix::fs::symlink(s.outside.join("outside.csv"), s.work.join("in/l.csv"))
        .expect("csv link");
    let v = s
        .run("data", "aggregate", json!({"input": "in", "output": "out"}))
        .await
        .expect("aggregate");
    assert_eq!(v["outputs"], json!(["out/a.json"]), "{v}");
    std::fs::hard_link(s.outside.join("outside.csv"), s.work.join("in/h.csv")).expect("hard link");
    let e = s
        .run(
            "data",
            "aggregate",
            json!({"input": "in", "output": "out2"}),
        )
        .await
        .expect_err("hard-linked csv");
    assert_eq!(e.error_type, "PermissionDenied", "{e}");
    assert!(
        e.message.contains("in/h.csv") && e.message.contains("hard links"),
        "{e}"
    );
    assert!(!s.work.join("out2/h.json").exists());
}

#[tokio::test]
async fn an_output_that_names_no_file_is_refused_and_nothing_lands_above() {
    let parent = tempfile::tempdir().expect("parent");
    let work = parent.path().join("work");
    std::fs::create_dir(&work).expect("work");
    let ctx = ActionContext::detached("confine", &work);
    let registry = ActionRegistry::with_builtins();
    let markdown = registry.get("report", "markdown").expect("report");
    for output in [".", "./", "sub/"] {
        let e = markdown.run(report(output), &ctx).await.expect_err(output);
        assert_eq!(e.error_type, "InvalidParameters", "{output}: {e}");
    }
    let aggregate = registry.get("data", "aggregate").expect("data");
    std::fs::create_dir(work.join("in")).expect("in");
    std::fs::write(work.join("in/a.csv"), "k\n1\n").expect("csv");
    let v = aggregate
        .run(json!({"input": "in", "output": "."}), &ctx)
        .await
        .expect("output in the work directory itself");
    assert_eq!(v["outputs"], json!(["./a.json"]), "{v}");
    assert_eq!(names(parent.path()), BTreeSet::from(["work".to_owned()]));
    assert_eq!(
        names(&work),
        BTreeSet::from(["a.json", "in", "summary.json"].map(str::to_owned))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_swapped_for_a_link_never_lets_an_action_out() {
    let s = setup();
    let before = snapshot(&s.outside);
    let swapper = Swapper::start(&s.work);
    let mut succeeded = 0usize;
    let mut escapes = Vec::new();
    let mut odd = Vec::new();
    let mut outcome = |r: &Result<Value, ActionError>| match r {
        Ok(_) => succeeded += 1,
        Err(e) if allowed_failure(e) => {}
        Err(e) => odd.push(e.to_string()),
    };
    for i in 0..ROUNDS {
        outcome(&s.run("chart", "bar", chart("d/b.svg")).await);
        outcome(
            &s.run("chart", "line", chart(&format!("d/sub{}/l.svg", i % 4)))
                .await,
        );
        outcome(&s.run("report", "markdown", report("d/r.md")).await);
        let stats = s.run("code", "stats", json!({"path": "d"})).await;
        if let Ok(v) = &stats {
            if v["languages"].get("Python").is_some() {
                escapes.push(format!("code.stats round {i}: {v}"));
            }
        }
        outcome(&stats);
        let agg = s
            .run("data", "aggregate", json!({"input": "d", "output": "d/o"}))
            .await;
        if let Ok(v) = &agg {
            if v.to_string().contains("outside") {
                escapes.push(format!("data.aggregate round {i}: {v}"));
            }
        }
        outcome(&agg);
    }
    let swaps = swapper.stop();
    let changed: Vec<String> = snapshot(&s.outside)
        .symmetric_difference(&before)
        .map(|e| e.chars().take(60).collect())
        .collect();
    assert!(
        changed.is_empty(),
        "the outside changed ({swaps} swaps): {changed:?}"
    );
    assert!(escapes.is_empty(), "read from outside: {escapes:?}");
    assert!(odd.is_empty(), "unexpected failures: {odd:?}");
    assert!(
        succeeded > 0,
        "no action succeeded, so the race was not exercised"
    );
}

#[tokio::test]
async fn ordinary_inputs_give_the_same_results() {
    let s = setup();
    std::fs::write(s.work.join("d/src/.hidden.rs"), "x\n").expect("hidden");
    std::fs::write(s.work.join("d/src/lib.py"), "# c\n\nx = 1\n").expect("py");
    std::fs::create_dir(s.work.join("d/src/node_modules")).expect("nm");
    std::fs::write(s.work.join("d/src/node_modules/m.js"), "f();\n").expect("js");
    let v = s
        .run(
            "code",
            "stats",
            json!({"path": "d", "exclude": ["*/node_modules/*"]}),
        )
        .await
        .expect("stats");
    assert_eq!(
        v,
        json!({
            "path": "d", "files": 2, "lines": 5, "code": 2, "comment": 2, "blank": 1,
            "languages": {
                "Python": {"files": 1, "lines": 3, "code": 1, "comment": 1, "blank": 1},
                "Rust": {"files": 1, "lines": 2, "code": 1, "comment": 1, "blank": 0},
            },
            "code_by_language": {"Python": 1, "Rust": 1},
            "skipped": {"unknown_language": 1, "too_large": 0, "not_text": 0},
        })
    );
    let v = s
        .run(
            "code",
            "stats",
            json!({"path": "d", "include": ["src/*.rs"]}),
        )
        .await
        .expect("include");
    assert_eq!(v["files"], 1, "{v}");
    let e = s
        .run("code", "stats", json!({"path": "missing"}))
        .await
        .expect_err("missing");
    assert_eq!(e.error_type, "IoError");
    assert!(e.message.contains("cannot read directory `missing`"), "{e}");

    let v = s
        .run(
            "data",
            "aggregate",
            json!({"input": "d", "output": "p/q", "group_by": "k"}),
        )
        .await
        .expect("aggregate");
    assert_eq!(
        v,
        json!({
            "files": 1, "rows": 2, "outputs": ["p/q/inside.json"],
            "rows_by_file": {"inside": 2}, "summary": "p/q/summary.json",
        })
    );
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(s.work.join("p/q/inside.json")).expect("inside.json"),
    )
    .expect("json");
    assert_eq!(doc["columns"]["v"]["sum"], json!(3.0), "{doc}");
    let e = s
        .run("data", "aggregate", json!({"input": "p", "output": "x"}))
        .await
        .expect_err("no csv");
    assert_eq!(e.error_type, "DataError", "{e}");
    assert!(!s.work.join("x").exists(), "nothing written without input");

    let v = s
        .run("chart", "bar", chart("charts/c.svg"))
        .await
        .expect("chart");
    let svg = std::fs::read_to_string(s.work.join("charts/c.svg")).expect("svg");
    assert_eq!(v["bytes"], svg.len());
    assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"), "{svg}");
    let v = s
        .run("report", "markdown", report("r/x.md"))
        .await
        .expect("report");
    assert_eq!(v, json!({"path": "r/x.md", "bytes": 11}));
    assert_eq!(
        std::fs::read_to_string(s.work.join("r/x.md")).expect("md"),
        "# r\n\nn = 1\n"
    );
}

#[test]
fn write_atomically_beneath_refuses_links_below_its_root() {
    let s = setup();
    let e = orch_tasks::fs::write_atomically_beneath(&s.work, Path::new("lnk/x"), b"x", true)
        .expect_err("through a link");
    assert!(e.is_escape(), "{e}");
    orch_tasks::fs::write_atomically_beneath(&s.work, Path::new("d/new/x"), b"x", true)
        .expect("written");
    assert_eq!(
        std::fs::read_to_string(s.work.join("d/new/x")).expect("x"),
        "x"
    );
    assert_eq!(
        names(&s.outside),
        BTreeSet::from(["outside.csv", "secret.py", "secret.txt"].map(str::to_owned))
    );
}
