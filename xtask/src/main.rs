//! `cargo xtask`: project automation (`ci`, `tidy`, `bench`), matklad's convention.

#[cfg(test)]
mod tidy;

use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci      run exactly what CI runs: cargo fmt --check, cargo clippy -D warnings, cargo test --workspace
  tidy    run the architecture and convention checks (they are tests in xtask/src/tidy.rs)
  bench   run the benchmarks: cargo bench -p orch-benches [-- ARGS], then the per-step
          time and peak-memory table (orch-benches' definition-report)
  help    show this message";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let steps: Vec<Vec<String>> = match args.first().map(String::as_str) {
        Some("ci") => vec![
            words("fmt --all -- --check"),
            words("clippy --workspace --all-targets -- -D warnings"),
            words("test --workspace"),
        ],
        Some("tidy") => vec![words("test -p xtask")],
        Some("bench") => {
            let mut cmd = words("bench -p orch-benches");
            if args.len() > 1 {
                cmd.push("--".to_owned());
                cmd.extend(args[1..].iter().cloned());
            }
            // Criterion first, then the table of docs/benchmarks.md (time and
            // peak memory per step, which criterion does not measure).
            vec![
                cmd,
                words("run --release -q -p orch-benches --bin definition-report"),
            ]
        }
        Some("help" | "-h" | "--help") | None => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("xtask: unknown command `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    for step in steps {
        eprintln!("$ cargo {}", step.join(" "));
        let status = Command::new(&cargo)
            .args(&step)
            .current_dir(workspace_root())
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!("xtask: `cargo {}` failed ({s})", step.join(" "));
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("xtask: cannot run `{cargo}`: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

fn workspace_root() -> std::path::PathBuf {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}
