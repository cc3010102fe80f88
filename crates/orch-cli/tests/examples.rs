//! Every example of README.md, docs/*.md and examples/ runs here, as written.
//!
//! The fenced blocks of each page are read and checked by kind, in page order, in a sandbox: a
//! copy of the repository's README.md, docs/, examples/ and crates/ in a temporary directory,
//! with the built `orch` on `PATH`, a `cargo` that stands in for `cargo run -q -p orch-cli --`,
//! and a temporary `HOME` (so orch's home is the per-user directory inside it, never the real
//! one). No network is used.
//!
//! - `sh` blocks run with `sh -e` in the sandbox's root;
//! - a block whose first line is a comment naming a file (`# flow.yaml`) is written to that file
//!   first;
//! - workflow definitions (`yaml`, `toml`, `json` with `steps`) are validated and run;
//!   fragments are run inside the workflow [`FRAGMENTS`] gives them;
//! - `text` blocks that start with `$ ` are transcripts: the command runs and its output must be
//!   the one shown; those whose output comes from a test's snapshot ([`EXCERPTS`]) must appear
//!   in that snapshot; the command synopsis must name only commands and options that exist;
//! - `rust` blocks must appear line by line in `crates/orch-tasks/tests/doc_actions.rs`,
//!   which compiles and runs them;
//! - the few blocks that cannot run in a test are listed in [`NOT_RUN`] with the reason.
//!
//! A block that fits none of these fails [`every_example_has_a_check`], as does a file of
//! examples/ that no test runs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Blocks that are not run, matched by page and the start of their first line, with the reason.
const NOT_RUN: &[(&str, &str, &str)] = &[
    (
        "README.md",
        "# The whole test suite",
        "`cargo xtask ci` is what CI runs: it runs this test itself",
    ),
    (
        "docs/benchmarks.md",
        "cargo xtask bench",
        "the benchmarks take many minutes of a quiet machine, and tests never assert speed",
    ),
    (
        "docs/benchmarks.md",
        "valgrind --tool=callgrind",
        "needs valgrind and a release build of the benchmarks",
    ),
    (
        "docs/architecture.md",
        "text ──parse──▶",
        "a diagram of the code, not a command",
    ),
    (
        "docs/server.md",
        "scrape_configs:",
        "Prometheus' configuration: Prometheus is not installed here (the session above scrapes /metrics with curl)",
    ),
];

/// Transcripts whose output is abridged from a test's snapshot (the input file is the test's own):
/// page, the start of the first line, and the snapshot that holds every line shown.
const EXCERPTS: &[(&str, &str, &str)] = &[(
    "README.md",
    "$ orch validate broken.yaml",
    "crates/orch-cli/tests/snapshots/cli__validate_reports_every_problem_with_file_line_and_column.snap",
)];

/// Definition fragments: page, the start of the first line, and a workflow with `{FRAGMENT}`
/// where the fragment goes (indented to fit there).
const FRAGMENTS: &[(&str, &str, &str)] = &[(
    "docs/workflow-format.md",
    "conditions:",
    "name: fragment\nsteps:\n  - name: count_rows\n    module: shell\n    action: exec\n    parameters: { program: \"true\" }\n  - name: after\n    module: core\n    action: noop\n{FRAGMENT}\n",
)];

/// After a page's blocks ran, these paths (relative to the sandbox's root; `~/` for its HOME)
/// must exist: where the page says its examples write.
const WRITES: &[(&str, &[&str])] = &[(
    "README.md",
    &[
        "target/code-report.txt",
        "~/.local/share/orch/orch.db",
        "demo/reports/analysis.md",
        "demo/reports/code-by-language.svg",
    ],
)];

/// The files of examples/ and how each is run: a definition with the arguments `orch run`
/// gets, or `None` for a file a definition uses.
const EXAMPLE_FILES: &[(&str, Option<&[&str]>)] = &[
    ("code-report.yaml", Some(&[])),
    ("concurrency.yaml", Some(&[])),
    ("data-pipeline.toml", Some(&[])),
    ("fan-out.yaml", Some(&[])),
    ("nightly-report.yaml", Some(&[])),
    ("finally.yaml", Some(&[])),
    (
        "seed-analysis.json",
        Some(&[
            "--module",
            "static_analysis=examples/seed_modules.py",
            "--module",
            "data_visualization=examples/seed_modules.py",
            "--module",
            "documentation=examples/seed_modules.py",
        ]),
    ),
    ("seed_modules.py", None),
    ("secrets.yaml", Some(&[])),
    ("data/customers.csv", None),
    ("data/orders-2026-11-23.csv", None),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository")
}

/// One fenced block of a page.
#[derive(Debug, Clone)]
struct Block {
    page: String,
    line: usize,
    info: String,
    text: String,
}

impl Block {
    fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }

    fn at(&self) -> String {
        format!("{}:{}", self.page, self.line)
    }

    fn is(&self, page: &str, start: &str) -> bool {
        self.page == page && self.first_line().starts_with(start)
    }
}

/// The pages whose examples are checked: README.md and every docs/*.md.
fn pages() -> Vec<String> {
    let mut v = vec!["README.md".to_owned()];
    let mut docs: Vec<String> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    v.extend(docs);
    v
}

/// The fenced blocks of a page, in order.
fn blocks(page: &str) -> Vec<Block> {
    let text = std::fs::read_to_string(repo().join(page)).expect("page");
    let mut out = Vec::new();
    let mut open: Option<(usize, String, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match open.take() {
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    open = Some((i + 1, info.trim().to_owned(), String::new()));
                }
            }
            Some((at, info, mut body)) => {
                if line.trim_end() == "```" {
                    out.push(Block {
                        page: page.to_owned(),
                        line: at,
                        info,
                        text: body,
                    });
                } else {
                    body.push_str(line);
                    body.push('\n');
                    open = Some((at, info, body));
                }
            }
        }
    }
    assert!(open.is_none(), "{page}: a fenced block is not closed");
    out
}

/// How a block is checked.
#[derive(Debug, PartialEq)]
enum Kind {
    Shell,
    File(String),
    Definition(&'static str),
    Fragment(&'static str),
    Json,
    Rust,
    Transcript,
    Excerpt(&'static str),
    Synopsis,
    NotRun,
}

/// The file a block's first line names (`# flow.yaml`), if it does.
fn named_file(b: &Block) -> Option<String> {
    let name = b.first_line().strip_prefix("# ")?.trim();
    (name.contains('.') && !name.contains(' ') && !name.contains('/')).then(|| name.to_owned())
}

fn kind(b: &Block) -> Result<Kind, String> {
    if NOT_RUN.iter().any(|(p, s, _)| b.is(p, s)) {
        return Ok(Kind::NotRun);
    }
    if let Some((_, _, file)) = EXCERPTS.iter().find(|(p, s, _)| b.is(p, s)) {
        return Ok(Kind::Excerpt(file));
    }
    if let Some((_, _, wrapper)) = FRAGMENTS.iter().find(|(p, s, _)| b.is(p, s)) {
        return Ok(Kind::Fragment(wrapper));
    }
    match b.info.as_str() {
        "sh" => Ok(Kind::Shell),
        "yaml" | "toml" | "json" | "python" if named_file(b).is_some() => {
            Ok(Kind::File(named_file(b).unwrap_or_default()))
        }
        "yaml" if b.text.contains("\nsteps:") => Ok(Kind::Definition("yaml")),
        "toml" if b.text.contains("[[steps]]") => Ok(Kind::Definition("toml")),
        "json" if b.text.contains("\"steps\"") => Ok(Kind::Definition("json")),
        "json" => Ok(Kind::Json),
        "rust" => Ok(Kind::Rust),
        "text" if b.first_line().starts_with("$ ") => Ok(Kind::Transcript),
        "text" if b.text.lines().all(|l| l.starts_with("orch ")) => Ok(Kind::Synopsis),
        _ => Err(format!(
            "{}: no rule checks this `{}` block; make it runnable (see this file's header) or list it in NOT_RUN with the reason",
            b.at(),
            b.info
        )),
    }
}

/// A sandbox: a copy of the repository's documented files, a HOME, and a PATH with `orch`.
struct Sandbox {
    _dir: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    path: String,
}

fn copy_tree(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from).follow_links(false) {
        let e = e.expect("walk");
        let rel = e.path().strip_prefix(from).expect("inside");
        if rel.components().any(|c| c.as_os_str() == "target") {
            continue;
        }
        let dest = to.join(rel);
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).expect("mkdir");
        } else if e.file_type().is_file() {
            // std::fs::copy keeps the permissions (examples/seed_modules.py is executable).
            std::fs::copy(e.path(), &dest).expect("copy");
        }
    }
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("orch");
        let home = dir.path().join("home");
        let bin = dir.path().join("bin");
        for d in [&root, &home, &bin] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        let repo = repo();
        std::fs::copy(repo.join("README.md"), root.join("README.md")).expect("copy");
        for d in ["docs", "examples", "crates"] {
            copy_tree(&repo.join(d), &root.join(d));
        }
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_orch"), bin.join("orch")).expect("link");
        let cargo = "#!/bin/sh\n\
            # Stands in for `cargo run -q -p orch-cli -- ARGS` in the documentation's examples.\n\
            if [ \"$1 $2 $3 $4 $5\" = \"run -q -p orch-cli --\" ]; then shift 5; exec orch \"$@\"; fi\n\
            echo \"examples test: only 'cargo run -q -p orch-cli -- ...' is available here, not: cargo $*\" >&2\n\
            exit 97\n";
        std::fs::write(bin.join("cargo"), cargo).expect("write");
        let mut perms = std::fs::metadata(bin.join("cargo"))
            .expect("stat")
            .permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(bin.join("cargo"), perms).expect("chmod");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_owned())
        );
        Self {
            _dir: dir,
            root,
            home,
            path,
        }
    }

    /// A command in the sandbox's root, with nothing of the user's orch set.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.current_dir(&self.root)
            .env("PATH", &self.path)
            .env("HOME", &self.home)
            .env_remove("XDG_DATA_HOME")
            .env_remove("ORCH_HOME")
            .env_remove("CODOMYRMEX_ORCHESTRATION_DIR")
            .env_remove("ORCH_CONFIG")
            .env_remove("ORCH_STORE_URL")
            .env_remove("ORCH_MAX_WORKERS")
            .env_remove("CODOMYRMEX_MAX_WORKERS")
            .env_remove("CODOMYRMEX_RESOURCE_CONFIG")
            // The secret examples/secrets.yaml and workflow-format.md read.
            .env("DEMO_API_TOKEN", "demo-token-for-the-examples")
            .env("NO_COLOR", "1");
        c
    }

    /// Runs a shell script; returns stdout, panics with everything on failure.
    fn sh(&self, script: &str, what: &str) -> String {
        let out = self
            .command("sh")
            .args(["-e", "-c", script])
            .output()
            .expect("sh runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{what} failed ({}):\n--- script\n{script}--- stdout\n{stdout}--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn orch(&self, args: &[&str], what: &str) -> String {
        let out = self.command("orch").args(args).output().expect("orch runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{what}: `orch {}` failed ({}):\n{stdout}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn exists(&self, rel: &str) -> bool {
        match rel.strip_prefix("~/") {
            Some(r) => self.home.join(r).exists(),
            None => self.root.join(rel).exists(),
        }
    }
}

/// Lines of `text` with trailing whitespace removed (tables pad their last column).
fn trimmed(text: &str) -> Vec<String> {
    text.lines().map(|l| l.trim_end().to_owned()).collect()
}

/// Checks one block in the sandbox.
fn check(s: &Sandbox, b: &Block) {
    let what = format!("the example at {}", b.at());
    match kind(b).unwrap_or_else(|e| panic!("{e}")) {
        Kind::NotRun => {}
        Kind::Shell => {
            s.sh(&b.text, &what);
        }
        Kind::File(name) => {
            std::fs::write(s.root.join(&name), &b.text).expect("write");
        }
        Kind::Definition(ext) => {
            let file = format!("example-{}.{ext}", b.line);
            std::fs::write(s.root.join(&file), &b.text).expect("write");
            s.orch(&["validate", &file], &what);
            s.orch(&["run", &file], &what);
        }
        Kind::Fragment(wrapper) => {
            let indented: String = b.text.lines().map(|l| format!("    {l}\n")).collect();
            let file = format!("fragment-{}.yaml", b.line);
            let text = wrapper.replace("{FRAGMENT}\n", &indented);
            std::fs::write(s.root.join(&file), text).expect("write");
            s.orch(&["validate", &file], &what);
            s.orch(&["run", &file], &what);
        }
        Kind::Json => {
            serde_json::from_str::<serde_json::Value>(&b.text)
                .unwrap_or_else(|e| panic!("{what} is not JSON: {e}"));
        }
        Kind::Rust => {
            let tests = "crates/orch-tasks/tests/doc_actions.rs";
            let compiled = std::fs::read_to_string(repo().join(tests)).expect("doc tests");
            let want: Vec<&str> = b.text.lines().map(str::trim).collect();
            let have: Vec<&str> = compiled.lines().map(str::trim).collect();
            assert!(
                have.windows(want.len()).any(|w| w == want.as_slice()),
                "{what}: a Rust example must appear, line by line, in {tests}, which compiles and runs it; copy it there"
            );
        }
        Kind::Transcript => {
            let mut lines = b.text.lines().peekable();
            while let Some(line) = lines.next() {
                let cmd = line.strip_prefix("$ ").unwrap_or_else(|| {
                    panic!("{what}: expected a `$ ` command line, got {line:?}")
                });
                let mut want = Vec::new();
                while let Some(l) = lines.next_if(|l| !l.starts_with("$ ")) {
                    want.push(l.trim_end().to_owned());
                }
                let got = s.sh(cmd, &what);
                assert_eq!(trimmed(&got), want, "{what}: the output of `{cmd}`");
            }
        }
        Kind::Excerpt(file) => {
            let snapshot = std::fs::read_to_string(repo().join(file)).expect("snapshot");
            for line in b.text.lines().filter(|l| !l.starts_with("$ ")) {
                assert!(
                    snapshot.lines().any(|l| l.trim() == line.trim()),
                    "{what}: the line {line:?} is not in {file}"
                );
            }
        }
        Kind::Synopsis => check_synopsis(s, b, &what),
    }
}

/// Every command of the synopsis exists, with every option it shows.
fn check_synopsis(s: &Sandbox, b: &Block, what: &str) {
    for line in b.text.lines() {
        for alt in line.split(" | ") {
            let alt = alt.trim();
            let alt = if alt.starts_with("orch ") {
                alt.to_owned()
            } else {
                format!("orch {alt}")
            };
            let words: Vec<&str> = alt
                .split_whitespace()
                .skip(1)
                .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase()))
                .collect();
            let mut args = words.clone();
            args.push("--help");
            let help = s.orch(&args, what);
            for opt in alt
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .filter(|w| w.starts_with('-') && w.len() > 1)
            {
                assert!(
                    help.contains(opt),
                    "{what}: `{alt}` shows `{opt}`, which `orch {}` does not offer:\n{help}",
                    args.join(" ")
                );
            }
        }
    }
}

/// Runs every block of a page in one sandbox, in order, then checks what the page says was written.
fn run_page(page: &str) {
    let s = Sandbox::new();
    let bs = blocks(page);
    for b in &bs {
        check(&s, b);
    }
    for (p, paths) in WRITES {
        if *p == page {
            for rel in *paths {
                assert!(
                    s.exists(rel),
                    "{page}: its examples should have written {rel}"
                );
            }
        }
    }
    // No example leaves a store in the sandbox's root: the home is the per-user directory.
    assert!(
        !s.root.join(".orch/orch.db").exists(),
        "{page}: a store in the current directory"
    );
}

#[test]
fn every_example_has_a_check() {
    let all: Vec<Block> = pages().iter().flat_map(|p| blocks(p)).collect();
    let problems: Vec<String> = all.iter().filter_map(|b| kind(b).err()).collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Every exception names exactly one block, so none outlives its example.
    let tables = NOT_RUN
        .iter()
        .map(|(p, s, _)| (p, s))
        .chain(EXCERPTS.iter().map(|(p, s, _)| (p, s)))
        .chain(FRAGMENTS.iter().map(|(p, s, _)| (p, s)));
    for (page, start) in tables {
        let n = all.iter().filter(|b| b.is(page, start)).count();
        assert_eq!(n, 1, "{page}: `{start}...` names {n} blocks, not one");
    }
    // Every page with runnable examples has its test below.
    for p in pages() {
        let runs = blocks(&p)
            .iter()
            .any(|b| kind(b).is_ok_and(|k| k != Kind::NotRun));
        let tested = [
            "README.md",
            "docs/actions.md",
            "docs/cli.md",
            "docs/mcp.md",
            "docs/schedules.md",
            "docs/server.md",
            "docs/workflow-format.md",
        ]
        .contains(&p.as_str());
        assert!(
            !runs || tested,
            "{p} has examples but no test here runs its page; add one"
        );
    }
    // Every file of examples/ is run or used.
    let dir = repo().join("examples");
    for e in walkdir::WalkDir::new(&dir) {
        let e = e.expect("walk");
        if e.file_type().is_file() {
            let rel = e
                .path()
                .strip_prefix(&dir)
                .expect("inside")
                .to_string_lossy()
                .into_owned();
            assert!(
                EXAMPLE_FILES.iter().any(|(f, _)| *f == rel),
                "examples/{rel} is not in EXAMPLE_FILES: say how it runs"
            );
        }
    }
}

#[test]
fn readme_examples_run() {
    run_page("README.md");
}

#[test]
fn actions_examples_run() {
    run_page("docs/actions.md");
}

#[test]
fn cli_examples_run() {
    run_page("docs/cli.md");
}

#[test]
fn mcp_examples_run() {
    run_page("docs/mcp.md");
}

#[test]
fn schedules_examples_run() {
    run_page("docs/schedules.md");
}

#[test]
fn server_examples_run() {
    run_page("docs/server.md");
}

#[test]
fn workflow_format_examples_run() {
    run_page("docs/workflow-format.md");
}

#[test]
fn an_external_module_gets_the_request_the_docs_show() {
    let bs = blocks("docs/actions.md");
    let request = bs
        .iter()
        .find(|b| kind(b) == Ok(Kind::Json))
        .expect("the request example");
    let flow = bs
        .iter()
        .find(|b| named_file(b).as_deref() == Some("flow.yaml"))
        .expect("flow.yaml");
    let s = Sandbox::new();
    std::fs::write(s.root.join("flow.yaml"), &flow.text).expect("write");
    s.sh(
        "printf '#!/bin/sh\\ncat > request.json\\necho {}\\n' > capture.sh && chmod +x capture.sh",
        "the capture module",
    );
    s.orch(
        &["run", "flow.yaml", "--module", "stats=./capture.sh"],
        "flow.yaml",
    );
    let got: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.root.join("request.json")).expect("request"))
            .expect("json");
    let want: serde_json::Value = serde_json::from_str(&request.text).expect("json");
    assert_eq!(got, want);
}

#[test]
fn every_example_definition_validates_and_runs() {
    let s = Sandbox::new();
    for (file, args) in EXAMPLE_FILES {
        let Some(args) = args else { continue };
        let path = format!("examples/{file}");
        // `orch validate` takes the modules `orch run` serves.
        let mut validate = vec!["validate", path.as_str()];
        validate.extend_from_slice(args);
        s.orch(&validate, &path);
        let mut run = vec!["run", path.as_str()];
        run.extend_from_slice(args);
        let out = s.orch(&run, &path);
        assert!(out.contains("completed"), "{path}: {out}");
        assert!(
            !out.contains("demo-token-for-the-examples"),
            "{path} shows the secret: {out}"
        );
    }
    // What they say they write.
    let summary = std::fs::read_to_string(s.root.join("target/code-report.txt")).expect("summary");
    assert!(summary.contains("all crates: "), "{summary}");
    let published =
        std::fs::read_to_string(s.root.join("target/data-pipeline/published/2026-11-23.csv"))
            .expect("published");
    assert!(
        published.starts_with("order_id,customer_id,amount,customer_name\n")
            && published.contains("o1004,c3,250.00,Edsger Dijkstra"),
        "{published}"
    );
}

#[test]
fn the_data_pipeline_counts_the_data_of_each_run() {
    // Issue 10: `count_rows` was cached on its parameters while it read a file, so a second run
    // with other data was served the first run's count.
    let s = Sandbox::new();
    let count = |s: &Sandbox| -> String {
        let out = s.orch(
            &["run", "examples/data-pipeline.toml", "--json"],
            "data-pipeline",
        );
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        let step = v["steps"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == "count_rows"))
            .cloned()
            .expect("count_rows");
        step["result"]["data"]["stdout"]
            .as_str()
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    assert_eq!(count(&s), "12");
    let orders = s.root.join("examples/data/orders-2026-11-23.csv");
    let mut text = std::fs::read_to_string(&orders).expect("orders");
    text.push_str("o1013,c1,1.00\n");
    std::fs::write(&orders, text).expect("write");
    assert_eq!(count(&s), "13");
}
