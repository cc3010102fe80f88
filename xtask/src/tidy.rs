//! Tidy checks: the architecture invariants of SPEC §2 and the code conventions, as tests.
//!
//! Each check is a pure function over parsed `cargo metadata` or file
//! contents that returns every problem it finds (what, where, how to fix), so
//! it is unit-tested on synthetic inputs that break it (module `tests` at the
//! bottom). The `#[test]`s in between run the checks on the real workspace,
//! which is how plain `cargo test --workspace` fails when an invariant breaks.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

mod doors;
mod size;

/// The layers: a crate may depend only on internal crates of a strictly lower layer.
const LAYERS: &[(&str, u32)] = &[
    ("orch-model", 0),
    ("orch-resources", 1),
    ("orch-tasks", 2),
    ("orch-workflows", 3),
    ("orch-projects", 4),
    ("orch-engine", 5),
    ("orch-mcp", 6),
    ("orch-server", 6),
    ("orch-cli", 7),
];
const LAYER_CHAIN: &str = "orch-model <- orch-resources <- orch-tasks <- orch-workflows <- orch-projects <- orch-engine <- {orch-mcp, orch-server} <- orch-cli";
/// Store backends: beside orch-model, depending on it only.
const STORES: &[&str] = &["orch-store-sqlite", "orch-store-postgres"];
/// The crates that may pick a store backend.
const STORE_PICKERS: &[&str] = &["orch-engine", "orch-cli"];
/// Tool crates: exempt from layering, but nothing may depend on them.
const TOOLS: &[&str] = &["xtask", "orch-benches"];
/// The one crate that may install tracing subscribers or metrics exporters.
const SUBSCRIBER_INSTALLER: &str = "orch-cli";
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
/// The directories whose Rust files follow the conventions.
const SOURCE_DIRS: &[&str] = &["crates", "xtask", "benches"];

// ---------------------------------------------------------------------------
// The workspace, as the checks see it.

/// How a crate depends on another (`kind` in cargo metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DepKind {
    Normal,
    Dev,
    Build,
}

impl fmt::Display for DepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DepKind::Normal => "dependency",
            DepKind::Dev => "dev-dependency",
            DepKind::Build => "build-dependency",
        })
    }
}

/// One direct dependency of a workspace member, by package name.
#[derive(Debug, Clone)]
struct Dep {
    name: String,
    kind: DepKind,
}

/// One workspace member: its package name, its directory relative to the
/// workspace root (with `/` separators), and its direct dependencies.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    dir: String,
    deps: Vec<Dep>,
}

fn str_field<'a>(v: &'a Value, field: &str, what: &str) -> Result<&'a str, String> {
    v[field]
        .as_str()
        .ok_or_else(|| format!("cargo metadata: {what} has no string field `{field}`"))
}

fn array_field<'a>(v: &'a Value, field: &str, what: &str) -> Result<&'a [Value], String> {
    v[field]
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| format!("cargo metadata: {what} has no array field `{field}`"))
}

/// The ids of the workspace members.
fn member_ids(meta: &Value) -> Result<BTreeSet<&str>, String> {
    array_field(meta, "workspace_members", "the output")?
        .iter()
        .map(|id| {
            id.as_str()
                .ok_or_else(|| "cargo metadata: a workspace member id is not a string".to_owned())
        })
        .collect()
}

/// The workspace members of `cargo metadata` output (with or without deps).
fn parse_members(meta: &Value) -> Result<Vec<Member>, String> {
    let ids = member_ids(meta)?;
    let root = Path::new(str_field(meta, "workspace_root", "the output")?);
    let mut members = Vec::new();
    for p in array_field(meta, "packages", "the output")? {
        if !ids.contains(str_field(p, "id", "a package")?) {
            continue;
        }
        let name = str_field(p, "name", "a package")?.to_owned();
        let manifest = Path::new(str_field(p, "manifest_path", &name)?);
        let dir = manifest
            .parent()
            .and_then(|d| d.strip_prefix(root).ok())
            .map(|d| {
                d.components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .ok_or_else(|| {
                format!(
                    "{name}: its manifest {} is not inside the workspace root {}",
                    manifest.display(),
                    root.display()
                )
            })?;
        let mut deps = Vec::new();
        for d in array_field(p, "dependencies", &name)? {
            let kind = match d["kind"].as_str() {
                None => DepKind::Normal,
                Some("dev") => DepKind::Dev,
                Some("build") => DepKind::Build,
                Some(other) => {
                    return Err(format!(
                        "cargo metadata: {name} has a dependency of unknown kind `{other}`"
                    ));
                }
            };
            let dep = str_field(d, "name", &format!("a dependency of {name}"))?;
            deps.push(Dep {
                name: dep.to_owned(),
                kind,
            });
        }
        members.push(Member { name, dir, deps });
    }
    Ok(members)
}

/// The normal-dependency closure of the workspace member `start` in the
/// resolved graph: for each crate reachable through normal (not dev, not
/// build) edges, the path that reaches it first (breadth-first, so shortest).
fn normal_closure(meta: &Value, start: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let ids = member_ids(meta)?;
    let mut name_of: BTreeMap<&str, &str> = BTreeMap::new();
    let mut start_id = None;
    for p in array_field(meta, "packages", "the output")? {
        let id = str_field(p, "id", "a package")?;
        let name = str_field(p, "name", "a package")?;
        name_of.insert(id, name);
        if name == start && ids.contains(id) {
            start_id = Some(id);
        }
    }
    let start_id = start_id.ok_or_else(|| format!("`{start}` is not a workspace member"))?;
    let resolve = &meta["resolve"];
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for node in array_field(
        resolve,
        "nodes",
        "`resolve` (run cargo metadata without --no-deps)",
    )? {
        let id = str_field(node, "id", "a resolve node")?;
        let mut out = Vec::new();
        for d in array_field(node, "deps", id)? {
            let normal = array_field(d, "dep_kinds", id)?
                .iter()
                .any(|k| k["kind"].is_null());
            if normal {
                out.push(str_field(d, "pkg", id)?);
            }
        }
        edges.insert(id, out);
    }
    let name = |id: &str| {
        name_of
            .get(id)
            .map_or_else(|| id.to_owned(), |n| (*n).to_owned())
    };
    let mut paths: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen = BTreeSet::from([start_id]);
    let mut queue = VecDeque::from([(start_id, vec![name(start_id)])]);
    while let Some((id, path)) = queue.pop_front() {
        for &dep in edges.get(id).into_iter().flatten() {
            if seen.insert(dep) {
                let mut p = path.clone();
                p.push(name(dep));
                paths.entry(name(dep)).or_insert_with(|| p.clone());
                queue.push_back((dep, p));
            }
        }
    }
    Ok(paths)
}

// ---------------------------------------------------------------------------
// The checks: pure functions that return every problem found.

fn layer(name: &str) -> Option<u32> {
    LAYERS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l)
}

fn is_known(name: &str) -> bool {
    layer(name).is_some() || STORES.contains(&name) || TOOLS.contains(&name)
}

/// Where a member must live: directory name = package name.
fn expected_dir(name: &str) -> String {
    match name {
        "xtask" => "xtask".to_owned(),
        "orch-benches" => "benches".to_owned(),
        n => format!("crates/{n}"),
    }
}

/// Every member is known and lives in the directory named after it; every
/// known crate is a member.
fn check_members(members: &[Member]) -> Vec<String> {
    let mut errs = Vec::new();
    for m in members {
        if !is_known(&m.name) {
            errs.push(format!(
                "workspace member `{}` (in `{}`) is not one of the crates of SPEC §2; \
                 give it a place in the layers (LAYERS, STORES or TOOLS in xtask/src/tidy.rs) \
                 and in docs/architecture.md, or remove it",
                m.name, m.dir
            ));
        }
        let expected = expected_dir(&m.name);
        if m.dir != expected {
            errs.push(format!(
                "package `{}` lives in `{}`; move it to `{expected}` (directory name = package name)",
                m.name, m.dir
            ));
        }
    }
    let present: BTreeSet<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let known = LAYERS.iter().map(|(n, _)| *n).chain(STORES.iter().copied());
    for name in known.chain(TOOLS.iter().copied()) {
        if !present.contains(name) {
            errs.push(format!(
                "crate `{name}` is not a workspace member; it belongs in `{}` \
                 (members in the root Cargo.toml)",
                expected_dir(name)
            ));
        }
    }
    errs
}

/// Dependencies between internal crates point strictly downward; stores
/// depend on orch-model only; only the engine and the CLI pick a store;
/// nothing depends on a tool crate.
fn check_layers(members: &[Member]) -> Vec<String> {
    let internal: BTreeSet<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let mut errs = Vec::new();
    for m in members {
        let from = m.name.as_str();
        for dep in &m.deps {
            let to = dep.name.as_str();
            if !internal.contains(to) && !is_known(to) {
                continue;
            }
            let edge = format!("`{from}` has a {} on `{to}`", dep.kind);
            if TOOLS.contains(&to) {
                errs.push(format!(
                    "{edge}: nothing may depend on the tool crate `{to}`; \
                     move the shared code into a library crate"
                ));
                continue;
            }
            if TOOLS.contains(&from) {
                continue;
            }
            if STORES.contains(&from) {
                if to != "orch-model" {
                    errs.push(format!(
                        "{edge}: a store backend depends on orch-model only (of the internal \
                         crates); remove the dependency from crates/{from}/Cargo.toml and move \
                         what it needs into orch-model"
                    ));
                }
                continue;
            }
            if STORES.contains(&to) {
                if !STORE_PICKERS.contains(&from) {
                    errs.push(format!(
                        "{edge}: only orch-engine and orch-cli pick a store backend; \
                         take an `Arc<dyn Store>` (orch-model) instead"
                    ));
                }
                continue;
            }
            match (layer(from), layer(to)) {
                (Some(a), Some(b)) if b < a => {}
                (Some(_), Some(_)) => errs.push(format!(
                    "{edge}: crates depend strictly downward ({LAYER_CHAIN}); \
                     remove the dependency from crates/{from}/Cargo.toml, or move the code it \
                     needs down into `{from}`'s layer or below"
                )),
                _ => errs.push(format!(
                    "{edge}: `{}` has no layer; place it in LAYERS, STORES or TOOLS in \
                     xtask/src/tidy.rs",
                    if layer(from).is_none() { from } else { to }
                )),
            }
        }
    }
    errs
}

/// orch-model's dependency tree holds no async runtime, I/O or database crate.
/// `tree` maps each crate of the tree to the path that reaches it.
fn check_model_is_pure(tree: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    FORBIDDEN_UNDER_MODEL
        .iter()
        .filter_map(|f| tree.get(*f).map(|path| (f, path)))
        .map(|(f, path)| {
            format!(
                "orch-model depends on `{f}` (through {}): orch-model does no I/O and uses no \
                 async runtime or database; remove that dependency (or the feature that enables \
                 it; the workspace unifies features) and put the code that needs it in \
                 orch-tasks or a store crate",
                path.join(" -> ")
            )
        })
        .collect()
}

fn is_subscriber_or_exporter(name: &str) -> bool {
    name == "tracing-subscriber"
        || name.starts_with("metrics-exporter")
        || name.contains("opentelemetry")
}

/// Only orch-cli depends (directly, in any way) on tracing-subscriber or a
/// metrics exporter; libraries use the facades (tracing, metrics).
fn check_subscribers(members: &[Member]) -> Vec<String> {
    let mut errs = Vec::new();
    for m in members.iter().filter(|m| m.name != SUBSCRIBER_INSTALLER) {
        for dep in m.deps.iter().filter(|d| is_subscriber_or_exporter(&d.name)) {
            errs.push(format!(
                "`{}` has a {} on `{}`: only {SUBSCRIBER_INSTALLER} installs subscribers or \
                 exporters; remove it from {}/Cargo.toml and use the facade (tracing, metrics)",
                m.name, dep.kind, dep.name, m.dir
            ));
        }
    }
    errs
}

/// The `key = value` lines of a TOML file as `(table, key, value)`, with
/// whitespace removed from keys and values and comments dropped. Enough of
/// TOML for the manifest checks (xtask has no TOML parser, on purpose).
fn toml_entries(text: &str) -> Vec<(String, String, String)> {
    let mut table = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let line = strip_toml_comment(line).trim();
        if line.starts_with("[[") {
            // An array of tables, such as [[bin]]: never one of ours.
            table = format!("[{}]", compact(line.trim_matches(['[', ']'])));
        } else if let Some(header) = line.strip_prefix('[') {
            table = compact(header.trim_end_matches(']'));
        } else if let Some((key, value)) = line.split_once('=') {
            out.push((table.clone(), compact(key), compact(value)));
        }
    }
    out
}

fn compact(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The line without its `#` comment (a `#` inside a string does not count).
fn strip_toml_comment(line: &str) -> &str {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '#') => return &line[..i],
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
    }
    line
}

/// A member's manifest inherits the workspace lints and edition.
fn check_manifest(name: &str, path: &str, text: &str) -> Vec<String> {
    let entries = toml_entries(text);
    let has = |table: &str, key: &str, value: &str| {
        entries
            .iter()
            .any(|(t, k, v)| t == table && k == key && v == value)
    };
    let lints = has("lints", "workspace", "true")
        || has("", "lints.workspace", "true")
        || has("", "lints", "{workspace=true}");
    let edition = has("package", "edition.workspace", "true")
        || has("package", "edition", "{workspace=true}")
        || has("package.edition", "workspace", "true");
    let mut errs = Vec::new();
    if !lints {
        errs.push(format!(
            "{path}: `{name}` does not inherit the workspace lints; add\n      [lints]\n      workspace = true"
        ));
    }
    if !edition {
        errs.push(format!(
            "{path}: `{name}` does not inherit the workspace edition; write \
             `edition.workspace = true` under [package] (instead of its own `edition`)"
        ));
    }
    errs
}

/// The first line of a Rust file is a `//!` line saying what the file is for.
fn check_doc_line(path: &str, text: &str) -> Option<String> {
    (!text.starts_with("//!")).then(|| {
        let first = text.lines().next().unwrap_or("");
        format!(
            "{path}:1: the first line is `{first}`; start the file with a `//!` line saying \
             what the module is for"
        )
    })
}

/// No test is ignored: neither `#[ignore]` (with or without a reason) nor
/// `cfg_attr(..., ignore)`. Comment lines do not count.
fn check_no_ignore(path: &str, text: &str) -> Vec<String> {
    // Built from pieces so that this file does not trip its own check.
    let attribute = concat!("#[", "ignore");
    let word = concat!("ig", "nore");
    let is_word = |line: &str| {
        line.match_indices(word).any(|(i, _)| {
            let ident = |c: char| c.is_alphanumeric() || c == '_';
            !line[..i].ends_with(ident) && !line[i + word.len()..].starts_with(ident)
        })
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let code = line.trim_start();
            !code.starts_with("//")
                && (code.contains(attribute) || (code.contains("cfg_attr(") && is_word(code)))
        })
        .map(|(i, line)| {
            format!(
                "{path}:{}: `{}` ignores a test; our standard forbids ignored tests: make the \
                 test pass (and fast), or delete it",
                i + 1,
                line.trim()
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Reading the real workspace.

fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

fn cargo_metadata(with_deps: bool) -> Value {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(["metadata", "--format-version", "1"]);
    if !with_deps {
        cmd.arg("--no-deps");
    }
    let out = cmd
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| panic!("tidy: cannot run `{}`: {e}", Path::new(&cargo).display()));
    assert!(
        out.status.success(),
        "tidy: `cargo metadata` failed ({}); every Cargo.toml of the workspace must be valid:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("tidy: cargo metadata prints JSON")
}

/// `cargo metadata --no-deps`: the members and their direct dependencies.
fn metadata() -> &'static Value {
    static META: OnceLock<Value> = OnceLock::new();
    META.get_or_init(|| cargo_metadata(false))
}

/// `cargo metadata` with the resolved dependency graph.
fn resolved_metadata() -> &'static Value {
    static META: OnceLock<Value> = OnceLock::new();
    META.get_or_init(|| cargo_metadata(true))
}

fn workspace_members() -> Vec<Member> {
    parse_members(metadata()).unwrap_or_else(|e| panic!("tidy: {e}"))
}

/// Every `.rs` file under the source directories, `target/` skipped; symlinked
/// directories are not followed.
fn rust_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = SOURCE_DIRS.iter().map(|d| root.join(d)).collect();
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("tidy: cannot list {}: {e}", dir.display()));
        for entry in entries {
            let entry =
                entry.unwrap_or_else(|e| panic!("tidy: cannot list {}: {e}", dir.display()));
            let path = entry.path();
            let file_type = entry
                .file_type()
                .unwrap_or_else(|e| panic!("tidy: cannot stat {}: {e}", path.display()));
            if file_type.is_dir() {
                if entry.file_name() != "target" {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn shown(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Fails the test with every problem, one per line.
fn report(invariant: &str, errs: &[String]) {
    assert!(
        errs.is_empty(),
        "tidy: {invariant}: {} problem(s):\n  - {}\n(the checks live in xtask/src/tidy.rs; run them with `cargo xtask tidy`)\n",
        errs.len(),
        errs.join("\n  - ")
    );
}

#[test]
fn workspace_members_are_known_and_named_after_their_directory() {
    report(
        "workspace members (SPEC §2)",
        &check_members(&workspace_members()),
    );
}

#[test]
fn crates_depend_strictly_downward() {
    report(
        "dependency direction (SPEC §2)",
        &check_layers(&workspace_members()),
    );
}

#[test]
fn orch_model_has_no_runtime_io_or_database_dependency() {
    let tree =
        normal_closure(resolved_metadata(), "orch-model").unwrap_or_else(|e| panic!("tidy: {e}"));
    // Guards the walk itself: an empty tree would pass vacuously.
    assert!(
        tree.contains_key("serde"),
        "tidy: the walk of orch-model's resolved dependencies missed serde: {:?}",
        tree.keys().collect::<Vec<_>>()
    );
    report(
        "orch-model does no I/O (SPEC §2)",
        &check_model_is_pure(&tree),
    );
}

#[test]
fn only_the_cli_installs_subscribers_or_exporters() {
    report(
        "subscribers and exporters (SPEC §2)",
        &check_subscribers(&workspace_members()),
    );
}

#[test]
fn manifests_inherit_workspace_lints_and_edition() {
    let root = workspace_root();
    let mut errs = Vec::new();
    for m in workspace_members() {
        let path = root.join(&m.dir).join("Cargo.toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => errs.extend(check_manifest(&m.name, &shown(&root, &path), &text)),
            Err(e) => errs.push(format!("{}: cannot read: {e}", shown(&root, &path))),
        }
    }
    report("manifests (STYLE.md)", &errs);
}

#[test]
fn rust_files_start_with_a_doc_line_and_no_test_is_ignored() {
    let root = workspace_root();
    let files = rust_files(&root);
    assert!(
        files.iter().any(|f| f.ends_with("xtask/src/tidy.rs")),
        "tidy: the walk of the source directories missed xtask/src/tidy.rs"
    );
    let mut errs = Vec::new();
    for f in &files {
        let path = shown(&root, f);
        match std::fs::read_to_string(f) {
            Ok(text) => {
                errs.extend(check_doc_line(&path, &text));
                errs.extend(check_no_ignore(&path, &text));
            }
            Err(e) => errs.push(format!("{path}: cannot read as UTF-8 text: {e}")),
        }
    }
    report("Rust source conventions (STYLE.md)", &errs);
}

mod tests {
    //! The checks fail on synthetic inputs that break each invariant.

    use super::*;
    use serde_json::json;

    fn member(name: &str, deps: &[(&str, DepKind)]) -> Member {
        Member {
            name: name.into(),
            dir: expected_dir(name),
            deps: deps
                .iter()
                .map(|(d, kind)| Dep {
                    name: (*d).into(),
                    kind: *kind,
                })
                .collect(),
        }
    }

    /// Every crate of SPEC §2, each depending on the crate right below it.
    fn good_workspace() -> Vec<Member> {
        use DepKind::*;
        vec![
            member("orch-model", &[("serde", Normal), ("proptest", Dev)]),
            member("orch-resources", &[("orch-model", Normal)]),
            member(
                "orch-tasks",
                &[("orch-resources", Normal), ("orch-model", Dev)],
            ),
            member("orch-workflows", &[("orch-tasks", Normal)]),
            member("orch-projects", &[("orch-workflows", Normal)]),
            member(
                "orch-engine",
                &[("orch-projects", Normal), ("orch-store-sqlite", Normal)],
            ),
            member("orch-mcp", &[("orch-engine", Normal)]),
            member("orch-server", &[("orch-engine", Normal)]),
            member(
                "orch-cli",
                &[
                    ("orch-engine", Normal),
                    ("orch-store-postgres", Normal),
                    ("tracing-subscriber", Normal),
                ],
            ),
            member(
                "orch-store-sqlite",
                &[("orch-model", Normal), ("rusqlite", Normal)],
            ),
            member("orch-store-postgres", &[("orch-model", Dev)]),
            member(
                "orch-benches",
                &[("orch-cli", Normal), ("orch-store-sqlite", Dev)],
            ),
            member("xtask", &[("serde_json", Normal)]),
        ]
    }

    #[test]
    fn a_good_workspace_passes_every_check() {
        let ws = good_workspace();
        assert_eq!(check_members(&ws), Vec::<String>::new());
        assert_eq!(check_layers(&ws), Vec::<String>::new());
        assert_eq!(check_subscribers(&ws), Vec::<String>::new());
    }

    #[test]
    fn members_check_reports_each_unknown_misplaced_or_missing_crate() {
        let mut ws = good_workspace();
        ws.retain(|m| m.name != "orch-projects");
        ws.push(member("orch-extra", &[]));
        ws[0].dir = "crates/model".into();
        let errs = check_members(&ws);
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(
            errs.iter()
                .any(|e| e.contains("`orch-extra`") && e.contains("not one of"))
        );
        assert!(errs.iter().any(|e| e.contains("crates/model") && e.contains("move it to `crates/orch-model`")));
        assert!(
            errs.iter()
                .any(|e| e.contains("`orch-projects` is not a workspace member"))
        );
    }

    #[test]
    fn layers_check_reports_every_upward_or_sideways_edge_of_any_kind() {
        use DepKind::*;
        let mut ws = good_workspace();
        ws[0].deps.push(Dep {
            name: "orch-tasks".into(),
            kind: Normal,
        });
        ws[1].deps.push(Dep {
            name: "orch-workflows".into(),
            kind: Build,
        });
        ws[2].deps.push(Dep {
            name: "orch-engine".into(),
            kind: Dev,
        });
        ws[3].deps.push(Dep {
            name: "orch-workflows".into(),
            kind: Dev,
        });
        let errs = check_layers(&ws);
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(
            errs[0].contains("`orch-model` has a dependency on `orch-tasks`"),
            "{}",
            errs[0]
        );
        assert!(errs[1].contains("build-dependency"), "{}", errs[1]);
        assert!(errs[2].contains("dev-dependency"), "{}", errs[2]);
        assert!(errs.iter().all(|e| e.contains("strictly downward")));
    }

    #[test]
    fn layers_check_confines_stores_and_tools() {
        use DepKind::*;
        let ws = [
            member(
                "orch-store-sqlite",
                &[("orch-model", Normal), ("orch-tasks", Normal)],
            ),
            member("orch-store-postgres", &[("orch-store-sqlite", Dev)]),
            member("orch-workflows", &[("orch-store-sqlite", Normal)]),
            member("orch-tasks", &[("orch-store-postgres", Dev)]),
            member("orch-cli", &[("xtask", Build)]),
            member("orch-model", &[("orch-benches", Dev)]),
            member(
                "orch-benches",
                &[("orch-engine", Normal), ("orch-store-postgres", Normal)],
            ),
            member("xtask", &[("orch-cli", Normal)]),
        ];
        let errs = check_layers(&ws);
        assert_eq!(errs.len(), 6, "{errs:#?}");
        assert_eq!(
            errs.iter()
                .filter(|e| e.contains("orch-model only"))
                .count(),
            2
        );
        assert_eq!(
            errs.iter()
                .filter(|e| e.contains("pick a store backend"))
                .count(),
            2
        );
        assert_eq!(errs.iter().filter(|e| e.contains("tool crate")).count(), 2);
    }

    #[test]
    fn subscribers_check_reports_every_library_with_an_exporter() {
        use DepKind::*;
        let ws = [
            member(
                "orch-engine",
                &[("tracing-subscriber", Normal), ("tracing", Normal)],
            ),
            member("orch-tasks", &[("metrics-exporter-prometheus", Dev)]),
            member("orch-store-postgres", &[("opentelemetry_sdk", Normal)]),
            member(
                "orch-cli",
                &[
                    ("tracing-subscriber", Normal),
                    ("opentelemetry-otlp", Normal),
                ],
            ),
        ];
        let errs = check_subscribers(&ws);
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(errs[0].contains("`orch-engine` has a dependency on `tracing-subscriber`"));
    }

    /// Synthetic `cargo metadata` output: orch-model -> a -> b normally,
    /// a -> tokio only as a build dependency, orch-model -> mio only as a dev
    /// dependency, and c -> rusqlite (c is not under orch-model).
    fn synthetic_metadata() -> Value {
        let pkg = |name: &str| json!({"id": format!("{name}-id"), "name": name});
        let dep =
            |name: &str, kinds: Value| json!({"pkg": format!("{name}-id"), "dep_kinds": kinds});
        let normal = json!([{"kind": null, "target": null}]);
        let build = json!([{"kind": "build", "target": null}]);
        let dev = json!([{"kind": "dev", "target": null}]);
        let packages = ["orch-model", "a", "b", "tokio", "mio", "c", "rusqlite"].map(pkg);
        json!({
            "workspace_members": ["orch-model-id", "c-id"],
            "packages": packages,
            "resolve": {"nodes": [
                {"id": "orch-model-id", "deps": [dep("a", normal.clone()), dep("mio", dev)]},
                {"id": "a-id", "deps": [dep("b", normal.clone()), dep("tokio", build)]},
                {"id": "b-id", "deps": []},
                {"id": "c-id", "deps": [dep("rusqlite", normal)]},
            ]}
        })
    }

    #[test]
    fn the_closure_follows_only_normal_edges_and_records_paths() {
        let tree =
            normal_closure(&synthetic_metadata(), "orch-model").expect("orch-model is a member");
        assert_eq!(tree.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(tree["b"], ["orch-model", "a", "b"]);
        assert!(check_model_is_pure(&tree).is_empty());
        let c = normal_closure(&synthetic_metadata(), "c").expect("c is a member");
        let errs = check_model_is_pure(&c);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(
            errs[0].contains("`rusqlite` (through c -> rusqlite)"),
            "{}",
            errs[0]
        );
        assert!(normal_closure(&synthetic_metadata(), "a").is_err());
    }

    #[test]
    fn model_check_reports_every_forbidden_crate() {
        let tree: BTreeMap<String, Vec<String>> = ["serde", "tokio", "hyper", "tokio-stream"]
            .iter()
            .map(|n| {
                (
                    (*n).to_owned(),
                    vec!["orch-model".to_owned(), (*n).to_owned()],
                )
            })
            .collect();
        let errs = check_model_is_pure(&tree);
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert!(errs[0].contains("`tokio` (through orch-model -> tokio)"));
        assert!(errs[1].contains("`hyper`"));
    }

    #[test]
    fn members_are_parsed_from_metadata_with_kinds_and_directories() {
        let meta = json!({
            "workspace_root": "/ws",
            "workspace_members": ["m"],
            "packages": [{
                "id": "m", "name": "orch-tasks", "manifest_path": "/ws/crates/orch-tasks/Cargo.toml",
                "dependencies": [
                    {"name": "orch-model", "kind": null},
                    {"name": "proptest", "kind": "dev"},
                    {"name": "cc", "kind": "build"},
                ]
            }]
        });
        let members = parse_members(&meta).expect("well-formed metadata");
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].dir, "crates/orch-tasks");
        let kinds: Vec<DepKind> = members[0].deps.iter().map(|d| d.kind).collect();
        assert_eq!(kinds, [DepKind::Normal, DepKind::Dev, DepKind::Build]);
        assert!(parse_members(&json!({"packages": []})).is_err());
    }

    #[test]
    fn manifest_check_requires_inherited_lints_and_edition() {
        let good = "[package]\nname = \"x\" # the name\nedition.workspace = true\n\n[lints]\n# inherited\nworkspace = true\n";
        assert!(check_manifest("x", "x/Cargo.toml", good).is_empty());
        let inline = "lints = { workspace = true }\n[package]\nedition = { workspace = true }\n";
        assert!(check_manifest("x", "x/Cargo.toml", inline).is_empty());
        let own = "[package]\nname = \"x\"\nedition = \"2024\"\n[lints.rust]\nworkspace = true\n";
        let errs = check_manifest("x", "x/Cargo.toml", own);
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert!(errs[0].starts_with("x/Cargo.toml: `x` does not inherit the workspace lints"));
        let commented = "[package]\n# edition.workspace = true\ndescription = \"edition.workspace = true\"\n[lints]\nworkspace = false\n";
        assert_eq!(check_manifest("x", "x/Cargo.toml", commented).len(), 2);
        let wrong_table = "[dependencies]\nedition.workspace = true\n[lints]\nworkspace = true\n";
        assert_eq!(check_manifest("x", "x/Cargo.toml", wrong_table).len(), 1);
    }

    #[test]
    fn doc_line_check_wants_the_very_first_line() {
        assert!(check_doc_line("a.rs", "//! A module.\n").is_none());
        for bad in [
            "use x;\n",
            "\n//! Late.\n",
            "#![forbid(unsafe_code)]\n//! Doc.\n",
            "/// Item doc.\n",
            "",
        ] {
            let err = check_doc_line("a.rs", bad).expect("not a //! first line");
            assert!(err.starts_with("a.rs:1: "), "{err}");
        }
    }

    #[test]
    fn ignore_check_reports_every_ignored_test_with_its_line() {
        let attr = concat!("#[", "ignore");
        let text = format!(
            "//! Tests.\n#[test]\n{attr}]\nfn a() {{}}\n#[test] {attr} = \"slow\"]\nfn b() {{}}\n\
             #[cfg_attr(miri, {word})]\nfn c() {{}}\n// {attr}] in a comment is fine\n\
             #[cfg_attr(unix, doc = \"ignores nothing\")]\nfn d() {{}}\n",
            word = concat!("ig", "nore"),
        );
        let errs = check_no_ignore("t.rs", &text);
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(errs[0].starts_with("t.rs:3: "), "{}", errs[0]);
        assert!(errs[1].starts_with("t.rs:5: "), "{}", errs[1]);
        assert!(errs[2].starts_with("t.rs:7: "), "{}", errs[2]);
    }
}
