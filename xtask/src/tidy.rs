//! Tidy checks: the architecture invariants of SPEC §2 and the code conventions, as tests.
//!
//! Each check is a pure function over parsed `cargo metadata` or file
//! contents, so it is unit-tested on synthetic inputs that break it; the
//! `#[test]`s at the bottom run the checks on the real workspace.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The layers: a crate may depend only on internal crates of a lower layer.
const LAYERS: &[(&str, u32)] = &[
    ("orch-model", 0),
    ("orch-resources", 1),
    ("orch-tasks", 2),
    ("orch-workflows", 3),
    ("orch-projects", 4),
    ("orch-engine", 5),
    ("orch-cli", 6),
];
const STORES: &[&str] = &["orch-store-sqlite", "orch-store-postgres"];
const TOOLS: &[&str] = &["xtask", "orch-benches"];
/// Crates that must never be in orch-model's normal dependency tree.
const FORBIDDEN_UNDER_MODEL: &[&str] = &[
    "tokio",
    "tokio-util",
    "async-std",
    "smol",
    "futures-executor",
    "mio",
    "rusqlite",
    "libsqlite3-sys",
    "tokio-postgres",
    "postgres",
    "deadpool-postgres",
    "sqlx",
    "reqwest",
    "hyper",
];

fn root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

fn metadata() -> &'static Value {
    static META: OnceLock<Value> = OnceLock::new();
    META.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["metadata", "--format-version", "1"])
            .current_dir(root())
            .output()
            .expect("cargo metadata runs");
        assert!(
            out.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
    })
}

/// One workspace member: name, directory relative to the root, and its direct
/// dependencies as (name, kind) with kind "normal", "dev" or "build".
#[derive(Debug, Clone)]
struct Member {
    name: String,
    dir: String,
    deps: Vec<(String, String)>,
}

fn members(meta: &Value) -> Vec<Member> {
    let ws: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let root = meta["workspace_root"].as_str().unwrap_or("");
    meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["id"].as_str().is_some_and(|id| ws.contains(id)))
        .map(|p| {
            let manifest = p["manifest_path"].as_str().unwrap_or("");
            let dir = Path::new(manifest)
                .parent()
                .and_then(|d| d.strip_prefix(root).ok())
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default();
            let deps = p["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| {
                    let kind = d["kind"].as_str().unwrap_or("normal").to_owned();
                    (d["name"].as_str().unwrap_or("").to_owned(), kind)
                })
                .collect();
            Member {
                name: p["name"].as_str().unwrap_or("").to_owned(),
                dir,
                deps,
            }
        })
        .collect()
}

fn internal(name: &str) -> bool {
    LAYERS.iter().any(|(n, _)| *n == name) || STORES.contains(&name) || TOOLS.contains(&name)
}

/// Directory names equal package names, and every member is known.
fn check_names(members: &[Member]) -> Vec<String> {
    let mut errs = Vec::new();
    for m in members {
        let expected = match m.name.as_str() {
            "xtask" => "xtask".to_owned(),
            "orch-benches" => "benches".to_owned(),
            n => format!("crates/{n}"),
        };
        if !internal(&m.name) {
            errs.push(format!("{}: unknown workspace member; add it to the layers in xtask/src/tidy.rs and SPEC §2", m.name));
        }
        if m.dir != expected {
            errs.push(format!(
                "{}: lives in `{}`; move it to `{expected}` (directory name = package name)",
                m.name, m.dir
            ));
        }
    }
    errs
}

/// Dependencies point strictly downward; stores depend on orch-model only;
/// only the engine and the CLI pick a store; nothing depends on the tools.
fn check_layers(members: &[Member]) -> Vec<String> {
    let layer: HashMap<&str, u32> = LAYERS.iter().copied().collect();
    let mut errs = Vec::new();
    for m in members {
        for (dep, kind) in &m.deps {
            if !internal(dep) {
                continue;
            }
            let edge = format!("{} -> {dep} ({kind})", m.name);
            if TOOLS.contains(&dep.as_str()) {
                errs.push(format!(
                    "{edge}: nothing may depend on the tool crate `{dep}`"
                ));
                continue;
            }
            if TOOLS.contains(&m.name.as_str()) {
                continue;
            }
            if STORES.contains(&m.name.as_str()) {
                if dep != "orch-model" {
                    errs.push(format!(
                        "{edge}: a store backend depends on orch-model only"
                    ));
                }
                continue;
            }
            if STORES.contains(&dep.as_str()) {
                if m.name != "orch-engine" && m.name != "orch-cli" {
                    errs.push(format!(
                        "{edge}: only orch-engine and orch-cli may pick a store backend"
                    ));
                }
                continue;
            }
            match (layer.get(m.name.as_str()), layer.get(dep.as_str())) {
                (Some(a), Some(b)) if b < a => {}
                (Some(_), Some(_)) => errs.push(format!(
                    "{edge}: crates depend strictly downward (model <- resources <- tasks <- workflows <- projects <- engine <- cli)"
                )),
                _ => {}
            }
        }
    }
    errs
}

/// The normal-dependency closure of `start` in the resolved graph.
fn closure(meta: &Value, start: &str) -> BTreeSet<String> {
    let nodes = meta["resolve"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let name_of: HashMap<String, String> = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["id"].as_str().unwrap_or("").to_owned(),
                p["name"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in &nodes {
        let id = n["id"].as_str().unwrap_or("").to_owned();
        let deps = n["deps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|k| k["kind"].is_null())
            })
            .filter_map(|d| d["pkg"].as_str().map(str::to_owned))
            .collect();
        edges.insert(id, deps);
    }
    let Some(start_id) = name_of
        .iter()
        .find(|(_, n)| n.as_str() == start)
        .map(|(id, _)| id.clone())
    else {
        return BTreeSet::new();
    };
    let mut seen = BTreeSet::new();
    let mut stack = vec![start_id];
    while let Some(id) = stack.pop() {
        if let Some(ds) = edges.get(&id) {
            for d in ds {
                if seen.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
    }
    seen.iter()
        .filter_map(|id| name_of.get(id).cloned())
        .collect()
}

fn check_model_is_pure(tree: &BTreeSet<String>) -> Vec<String> {
    FORBIDDEN_UNDER_MODEL
        .iter()
        .filter(|f| tree.contains(**f))
        .map(|f| format!("orch-model depends (transitively) on `{f}`: orch-model does no I/O and uses no async runtime or database"))
        .collect()
}

/// Only orch-cli installs subscribers or exporters.
fn check_subscribers(members: &[Member]) -> Vec<String> {
    let mut errs = Vec::new();
    for m in members {
        if m.name == "orch-cli" {
            continue;
        }
        for (dep, kind) in &m.deps {
            let exporter = dep == "tracing-subscriber"
                || dep.starts_with("metrics-exporter")
                || dep.starts_with("opentelemetry");
            if exporter && kind != "dev" {
                errs.push(format!("{} -> {dep}: only orch-cli installs subscribers or exporters; libraries use the facades", m.name));
            }
        }
    }
    errs
}

/// Every manifest inherits the workspace lints and edition.
fn check_manifest(name: &str, text: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if !compact.contains("[lints]workspace=true") {
        errs.push(format!(
            "{name}: add `[lints] workspace = true` to its Cargo.toml"
        ));
    }
    if !compact.contains("edition.workspace=true") {
        errs.push(format!(
            "{name}: use `edition.workspace = true` in its Cargo.toml"
        ));
    }
    errs
}

/// The first line of every Rust file is a `//!` doc line.
fn check_doc_line(path: &str, text: &str) -> Option<String> {
    (!text.starts_with("//!"))
        .then(|| format!("{path}: the first line must be a `//!` line saying what the file is for"))
}

/// No test is ignored.
fn check_no_ignore(path: &str, text: &str) -> Vec<String> {
    let needle = concat!("#[", "ignore");
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with(needle))
        .map(|(i, _)| {
            format!(
                "{path}:{}: ignored test; fix it or delete it (our standard forbids ignored tests)",
                i + 1
            )
        })
        .collect()
}

fn rust_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = ["crates", "xtask", "benches"]
        .iter()
        .map(|d| root().join(d))
        .collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "target") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn report(errs: Vec<String>) {
    assert!(
        errs.is_empty(),
        "tidy found {} problem(s):\n  {}",
        errs.len(),
        errs.join("\n  ")
    );
}

#[test]
fn workspace_members_are_where_they_belong() {
    report(check_names(&members(metadata())));
}

#[test]
fn crates_depend_strictly_downward() {
    report(check_layers(&members(metadata())));
}

#[test]
fn orch_model_has_no_runtime_io_or_database_dependency() {
    let tree = closure(metadata(), "orch-model");
    assert!(
        tree.contains("serde"),
        "the closure walk found orch-model's dependencies: {tree:?}"
    );
    report(check_model_is_pure(&tree));
}

#[test]
fn only_the_cli_installs_subscribers() {
    report(check_subscribers(&members(metadata())));
}

#[test]
fn manifests_inherit_workspace_lints_and_edition() {
    let mut errs = Vec::new();
    for m in members(metadata()) {
        let path = root().join(&m.dir).join("Cargo.toml");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        errs.extend(check_manifest(&m.name, &text));
    }
    report(errs);
}

#[test]
fn rust_files_start_with_a_doc_line_and_no_test_is_ignored() {
    let files = rust_files();
    assert!(files.len() > 10, "found the workspace's Rust files");
    let mut errs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let shown = f.strip_prefix(root()).unwrap_or(&f).display().to_string();
        errs.extend(check_doc_line(&shown, &text));
        errs.extend(check_no_ignore(&shown, &text));
    }
    report(errs);
}

fn member(name: &str, deps: &[(&str, &str)]) -> Member {
    Member {
        name: name.into(),
        dir: format!("crates/{name}"),
        deps: deps
            .iter()
            .map(|(d, k)| ((*d).into(), (*k).into()))
            .collect(),
    }
}

#[test]
fn the_checks_catch_violations() {
    let up = [member("orch-model", &[("orch-tasks", "normal")])];
    assert_eq!(check_layers(&up).len(), 1);
    let sideways = [member("orch-tasks", &[("orch-tasks", "dev")])];
    assert_eq!(check_layers(&sideways).len(), 1);
    let store = [
        member("orch-store-sqlite", &[("orch-tasks", "normal")]),
        member("orch-workflows", &[("orch-store-sqlite", "normal")]),
    ];
    assert_eq!(check_layers(&store).len(), 2);
    let fine = [member(
        "orch-cli",
        &[
            ("orch-model", "normal"),
            ("orch-store-sqlite", "normal"),
            ("serde", "normal"),
        ],
    )];
    assert!(check_layers(&fine).is_empty());
    let tool = [member("orch-cli", &[("xtask", "normal")])];
    assert_eq!(check_layers(&tool).len(), 1);
    let moved = [Member {
        name: "orch-tasks".into(),
        dir: "crates/tasks".into(),
        deps: vec![],
    }];
    assert_eq!(check_names(&moved).len(), 1);
    let tree: BTreeSet<String> = ["serde".to_owned(), "tokio".to_owned()].into();
    assert_eq!(check_model_is_pure(&tree).len(), 1);
    assert_eq!(
        check_subscribers(&[member("orch-engine", &[("tracing-subscriber", "normal")])]).len(),
        1
    );
    assert_eq!(check_manifest("x", "[package]\nname = \"x\"\n").len(), 2);
    assert!(
        check_manifest("x", "edition.workspace = true\n[lints]\nworkspace = true\n").is_empty()
    );
    assert!(check_doc_line("a.rs", "use x;\n").is_some());
    assert!(check_doc_line("a.rs", "//! A module.\n").is_none());
    let ignored = format!("{}]\nfn t() {{}}\n", concat!("#[", "ignore"));
    assert_eq!(check_no_ignore("a.rs", &ignored).len(), 1);
}
