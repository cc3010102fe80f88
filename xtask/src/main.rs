//! `cargo xtask`: project automation (`ci`, `tidy`, `bench`), matklad's convention.
//!
//! The alias lives in `.cargo/config.toml`. Arguments are parsed by hand so
//! that xtask stays quick to build (its only dependency is serde_json, for the
//! tidy tests).

#[cfg(test)]
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  ci            run exactly what CI runs (.ci/run), in order, stopping at the first failure:
                  cargo fmt --all -- --check
                  cargo clippy --workspace --all-targets -- -D warnings
                  cargo clippy -p orch-cli --features otel -- -D warnings   (the optional
                                OpenTelemetry export, off by default: about a minute more)
                  RUSTDOCFLAGS='-D warnings' cargo doc --workspace --no-deps
                  cargo test --workspace        (includes the tidy tests of xtask)
                  cargo test --workspace --features orch-cli/otel --test otel_export   (the
                                OpenTelemetry export against a collector the test plays; last,
                                so the tests above use the default binary)
                it takes no arguments and has no switch to skip a step: it always runs all six
  tidy          run the architecture and convention checks: cargo test -p xtask
                (they are ordinary tests in xtask/src/tidy.rs, so `cargo test --workspace` runs them too)
  bench [ARGS]  run the benchmarks: cargo bench -p orch-benches [-- ARGS] (criterion; ARGS are
                passed to it, e.g. a name filter), then the tables of docs/benchmarks.md:
                  cargo run --release -p orch-benches --bin definition-report
                  cargo run --release -p orch-benches --bin scheduler-report
                  cargo build --release -p orch-cli --bin orch
                  cargo run --release -p orch-benches --bin cli-report   (the orch binary as a user
                                runs it; with --quick among ARGS: 10,000-step workloads only)
                  cargo run --release -p orch-benches --bin pg-report    (PostgreSQL on 127.0.0.1:5432
                                with two orch workers; skipped when it does not answer)
                  cargo run --release -p orch-benches --bin server-load  (orch serve under load from
                                loopback, through wrk, beside the bare HTTP stack (http-floor)
                                under the same load; skipped when wrk is not installed)
  help          show this message (also: no command, -h, --help)

exit status: 0 when every step succeeded, 1 when a step failed, 2 on a usage error";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, steps) = match plan(&args) {
        Ok(Plan::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Plan::Run { task, steps }) => (task, steps),
        Err(message) => {
            eprintln!("xtask: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = workspace_root();
    let total = steps.len();
    for (i, step) in steps.iter().enumerate() {
        let env: String = step
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v:?} "))
            .collect();
        let shown = format!("{env}cargo {}", step.args.join(" "));
        eprintln!("xtask {task}: step {}/{total}: $ {shown}", i + 1);
        let status = Command::new(&cargo)
            .args(&step.args)
            .envs(step.env.iter().copied())
            .current_dir(&root)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!(
                    "xtask {task}: FAILED at step {}/{total}: `{shown}` exited with {s}; {}",
                    i + 1,
                    step.on_failure
                );
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!(
                    "xtask {task}: cannot start `{}`: {e}; is cargo on PATH (or CARGO set)?",
                    Path::new(&cargo).display()
                );
                return ExitCode::FAILURE;
            }
        }
    }
    eprintln!("xtask {task}: OK ({total} of {total} step(s) succeeded)");
    ExitCode::SUCCESS
}

/// What a command line asks for.
#[derive(Debug, PartialEq)]
enum Plan {
    Help,
    /// Run these cargo invocations in order, stopping at the first failure.
    Run {
        task: &'static str,
        steps: Vec<Step>,
    },
}

/// One cargo invocation and what to tell the user when it fails.
#[derive(Debug, PartialEq)]
struct Step {
    args: Vec<String>,
    on_failure: &'static str,
    /// Environment variables set for it.
    env: &'static [(&'static str, &'static str)],
}

fn plan(args: &[String]) -> Result<Plan, String> {
    let (command, rest) = match args.split_first() {
        None => return Ok(Plan::Help),
        Some((c, rest)) => (c.as_str(), rest),
    };
    let no_args = |task: &str| -> Result<(), String> {
        match rest.first() {
            None => Ok(()),
            Some(arg) => Err(format!(
                "`{task}` takes no arguments (got `{arg}`); it always runs every step"
            )),
        }
    };
    match command {
        "help" | "-h" | "--help" => Ok(Plan::Help),
        "ci" => {
            no_args("ci")?;
            Ok(Plan::Run {
                task: "ci",
                steps: vec![
                    step(
                        "fmt --all -- --check",
                        "run `cargo fmt --all` to format the code",
                    ),
                    step(
                        "clippy --workspace --all-targets -- -D warnings",
                        "fix the warnings reported above",
                    ),
                    step(
                        "clippy -p orch-cli --features otel -- -D warnings",
                        "fix the build errors or warnings of orch-cli's `otel` feature above",
                    ),
                    Step {
                        env: &[("RUSTDOCFLAGS", "-D warnings")],
                        ..step(
                            "doc --workspace --no-deps",
                            "fix the documentation warnings above (a link that does not \
                             resolve, a private item linked from public docs)",
                        )
                    },
                    step(
                        "test --workspace",
                        "see the failing tests above (tidy failures name the file and the fix)",
                    ),
                    // Last: it builds target/debug/orch with the feature, which
                    // the tests above must not run. `--workspace` resolves
                    // the dependencies' features as the step above did, so
                    // only what the feature changes is built again.
                    step(
                        "test --workspace --features orch-cli/otel --test otel_export",
                        "see the failing test above (crates/orch-cli/tests/otel_export.rs: \
                         the spans orch exported, or what it printed)",
                    ),
                ],
            })
        }
        "tidy" => {
            no_args("tidy")?;
            Ok(Plan::Run {
                task: "tidy",
                steps: vec![step(
                    "test -p xtask",
                    "each failing check above lists every offending item and how to fix it",
                )],
            })
        }
        "bench" => {
            let mut criterion = step("bench -p orch-benches", "see the errors above");
            // The binary's table, from the release `orch` built just before.
            let mut cli_report = step(
                "run --release --quiet -p orch-benches --bin cli-report",
                "see the errors above (cli-report names the orch run that failed)",
            );
            // PostgreSQL with two `orch worker`s (skipped, with a line
            // saying so, when the server does not answer).
            let mut pg_report = step(
                "run --release --quiet -p orch-benches --bin pg-report",
                "see the errors above (pg-report names the workload that failed)",
            );
            // `orch serve` under load through `wrk` (skipped, with a line
            // saying so, when wrk is not installed).
            let mut server_load = step(
                "run --release --quiet -p orch-benches --bin server-load",
                "see the errors above (server-load names what failed)",
            );
            if rest.iter().any(|a| a == "--quick") {
                for s in [&mut cli_report, &mut pg_report, &mut server_load] {
                    s.args.extend(["--".to_owned(), "--quick".to_owned()]);
                }
            }
            if !rest.is_empty() {
                criterion.args.push("--".to_owned());
                criterion.args.extend(rest.iter().cloned());
            }
            Ok(Plan::Run {
                task: "bench",
                steps: vec![
                    criterion,
                    step(
                        "run --release --quiet -p orch-benches --bin definition-report",
                        "see the errors above",
                    ),
                    step(
                        "run --release --quiet -p orch-benches --bin scheduler-report",
                        "see the errors above",
                    ),
                    step(
                        "build --release --quiet -p orch-cli --bin orch",
                        "see the errors above",
                    ),
                    cli_report,
                    pg_report,
                    // The bare HTTP stack server-load measures beside orch.
                    step(
                        "build --release --quiet -p orch-benches --bin http-floor",
                        "see the errors above",
                    ),
                    server_load,
                ],
            })
        }
        other => Err(format!("unknown command `{other}`")),
    }
}

fn step(args: &str, on_failure: &'static str) -> Step {
    Step {
        args: args.split_whitespace().map(str::to_owned).collect(),
        on_failure,
        env: &[],
    }
}

/// The workspace root: xtask lives directly below it.
fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn commands(plan: Plan) -> Vec<String> {
        match plan {
            Plan::Run { steps, .. } => steps.into_iter().map(|s| s.args.join(" ")).collect(),
            Plan::Help => panic!("expected steps, got help"),
        }
    }

    #[test]
    fn ci_runs_fmt_clippy_doc_and_every_test_in_order() {
        let plan = plan(&args("ci")).expect("ci is a command");
        assert_eq!(
            commands(plan),
            [
                "fmt --all -- --check",
                "clippy --workspace --all-targets -- -D warnings",
                "clippy -p orch-cli --features otel -- -D warnings",
                "doc --workspace --no-deps",
                "test --workspace",
                "test --workspace --features orch-cli/otel --test otel_export",
            ]
        );
    }

    #[test]
    fn ci_builds_the_docs_with_warnings_as_errors() {
        let Plan::Run { steps, .. } = plan(&args("ci")).expect("ci is a command") else {
            panic!("expected steps, got help");
        };
        let doc = steps
            .iter()
            .find(|s| s.args.first().is_some_and(|a| a == "doc"))
            .expect("a doc step");
        assert_eq!(doc.env, [("RUSTDOCFLAGS", "-D warnings")]);
        assert!(steps.iter().filter(|s| !s.env.is_empty()).count() == 1);
    }

    #[test]
    fn ci_and_tidy_refuse_arguments_instead_of_skipping_anything() {
        for line in ["ci --skip-fmt", "ci fast", "tidy layers"] {
            let err = plan(&args(line)).expect_err("arguments are refused");
            assert!(err.contains("takes no arguments"), "{line}: {err}");
        }
    }

    #[test]
    fn tidy_runs_the_xtask_tests() {
        let plan = plan(&args("tidy")).expect("tidy is a command");
        assert_eq!(commands(plan), ["test -p xtask"]);
    }

    #[test]
    fn bench_passes_its_arguments_to_criterion() {
        let plain = commands(plan(&args("bench")).expect("bench is a command"));
        assert_eq!(plain[0], "bench -p orch-benches");
        let filtered = commands(plan(&args("bench W1 --quick")).expect("bench is a command"));
        assert_eq!(filtered[0], "bench -p orch-benches -- W1 --quick");
        assert!(
            filtered[1..]
                .iter()
                .all(|c| c.starts_with("run --release") || c.starts_with("build --release"))
        );
    }

    #[test]
    fn bench_measures_the_release_binary_after_building_it() {
        let plain = commands(plan(&args("bench")).expect("bench is a command"));
        let build = plain
            .iter()
            .position(|c| c == "build --release --quiet -p orch-cli --bin orch")
            .expect("the binary is built");
        let report = plain
            .iter()
            .position(|c| c == "run --release --quiet -p orch-benches --bin cli-report")
            .expect("the binary's table");
        assert!(build < report);
        let pg = plain
            .iter()
            .position(|c| c == "run --release --quiet -p orch-benches --bin pg-report")
            .expect("the PostgreSQL table");
        assert!(build < pg, "pg-report runs the release orch worker");
        let quick = commands(plan(&args("bench --quick")).expect("bench is a command"));
        assert!(
            quick
                .iter()
                .any(|c| c == "run --release --quiet -p orch-benches --bin cli-report -- --quick")
        );
        assert!(
            quick
                .iter()
                .any(|c| c == "run --release --quiet -p orch-benches --bin pg-report -- --quick")
        );
        assert_eq!(
            quick.last().map(String::as_str),
            Some("run --release --quiet -p orch-benches --bin server-load -- --quick")
        );
        let floor = quick
            .iter()
            .position(|c| c == "build --release --quiet -p orch-benches --bin http-floor")
            .expect("the floor server is built");
        assert_eq!(floor + 2, quick.len(), "built just before server-load");
    }

    #[test]
    fn help_and_unknown_commands() {
        for line in ["", "help", "-h", "--help"] {
            assert_eq!(plan(&args(line)), Ok(Plan::Help), "{line:?}");
        }
        let err = plan(&args("deploy")).expect_err("deploy is not a command");
        assert!(err.contains("unknown command `deploy`"), "{err}");
    }
}
