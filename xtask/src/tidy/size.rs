//! Tidy: no source file under `crates/*/src` is over 800 lines (its tests not counted) without a written reason.
//!
//! A file that long holds more than one concept; split it (one concept per
//! file, private modules, re-exports at the crate root). A file that must
//! stay long is listed in [`LONG_FILES`] with the reason. The list only
//! shrinks: an entry whose file is no longer over the limit (or gone) fails
//! the check until it is removed, except one marked [`BEING_SPLIT`], which
//! is tolerated while the split lands (remove it after).

use super::{report, shown, workspace_root};
use std::path::Path;

/// The most lines a file under `crates/*/src` may have, not counting the
/// `#[cfg(test)]` module at its end.
const MAX_SOURCE_LINES: usize = 800;

/// The reason for files that are being split now.
const BEING_SPLIT: &str = "being split (issue 11)";

/// Files allowed over [`MAX_SOURCE_LINES`], with the reason (paths from the
/// workspace root, sorted).
const LONG_FILES: &[(&str, &str)] = &[(
    "crates/orch-tasks/src/confined.rs",
    "one type, `Root`, whose operations all resolve beneath its descriptor; its error \
         type and the tree walk could move to files of their own (to be decided by the \
         owner of orch-tasks)",
)];

/// The lines of a file before its test module: everything above the first
/// line that is exactly `#[cfg(test)]` (unit tests sit at the end of a file).
fn lines_before_tests(text: &str) -> usize {
    text.lines()
        .take_while(|l| l.trim_end() != "#[cfg(test)]")
        .count()
}

/// `files` are `(path, lines before tests)`; `allowed` is `(path, reason)`.
/// Every file over the limit and not allowed, every allowance without a
/// reason, every allowance for a file that is not there, and every
/// allowance not [`BEING_SPLIT`] for a file within the limit is a problem.
fn check_sizes(files: &[(String, usize)], allowed: &[(&str, &str)]) -> Vec<String> {
    let mut errs = Vec::new();
    for (path, lines) in files.iter().filter(|(_, n)| *n > MAX_SOURCE_LINES) {
        if !allowed.iter().any(|(p, _)| p == path) {
            errs.push(format!(
                "{path}: {lines} lines (before its tests), over {MAX_SOURCE_LINES}: it holds \
                 more than one concept; split it into modules, one concept per file (private \
                 modules, re-exported at the crate root), or list it in LONG_FILES \
                 (xtask/src/tidy/size.rs) with the reason it must stay long"
            ));
        }
    }
    for (path, reason) in allowed {
        if reason.trim().is_empty() {
            errs.push(format!(
                "{path}: listed in LONG_FILES without a reason; write why it must stay long"
            ));
        }
        match files.iter().find(|(p, _)| p == path) {
            None => errs.push(format!(
                "{path}: listed in LONG_FILES but there is no such file under crates/*/src; \
                 remove the entry"
            )),
            // A file being split gets short while the split lands; its
            // entry is removed after (it is harmless until then).
            Some((_, n)) if *n <= MAX_SOURCE_LINES && *reason != BEING_SPLIT => errs.push(format!(
                "{path}: {n} lines now, within {MAX_SOURCE_LINES}; remove its entry from \
                 LONG_FILES (xtask/src/tidy/size.rs) so that it stays short"
            )),
            Some(_) => {}
        }
    }
    errs
}

/// Every `.rs` file under `crates/*/src`, with its lines before tests.
fn crate_sources(root: &Path) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let crates = std::fs::read_dir(root.join("crates"))
        .unwrap_or_else(|e| panic!("tidy: cannot list crates/: {e}"));
    let mut stack: Vec<_> = crates
        .map(|e| e.unwrap_or_else(|e| panic!("tidy: cannot list crates/: {e}")))
        .map(|e| e.path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
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
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("tidy: cannot read {}: {e}", path.display()));
                out.push((shown(root, &path), lines_before_tests(&text)));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn no_source_file_is_over_800_lines_without_a_written_reason() {
    let files = crate_sources(&workspace_root());
    assert!(
        files
            .iter()
            .any(|(p, _)| p == "crates/orch-model/src/lib.rs"),
        "tidy: the walk of crates/*/src missed crates/orch-model/src/lib.rs"
    );
    report(
        "source files of one concept (docs/architecture.md)",
        &check_sizes(&files, LONG_FILES),
    );
}

mod tests {
    //! The size check on synthetic files.

    use super::*;

    #[test]
    fn tests_at_the_end_of_a_file_do_not_count() {
        assert_eq!(lines_before_tests("a\nb\n#[cfg(test)]\nmod tests {}\n"), 2);
        assert_eq!(lines_before_tests("a\nb\n"), 2);
        assert_eq!(lines_before_tests("    #[cfg(test)]\nfn a() {}\n"), 2);
    }

    #[test]
    fn long_files_need_a_reason_and_the_list_only_shrinks() {
        let files = vec![
            ("crates/a/src/long.rs".to_owned(), 801),
            ("crates/a/src/listed.rs".to_owned(), 900),
            ("crates/a/src/short.rs".to_owned(), 800),
            ("crates/a/src/unreasoned.rs".to_owned(), 1000),
        ];
        let allowed = [
            ("crates/a/src/listed.rs", "one table of constants"),
            ("crates/a/src/short.rs", "a long table once"),
            ("crates/a/src/gone.rs", BEING_SPLIT),
            ("crates/a/src/unreasoned.rs", " "),
        ];
        let errs = check_sizes(&files, &allowed);
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(
            errs[0].starts_with("crates/a/src/long.rs: 801 lines"),
            "{}",
            errs[0]
        );
        assert!(errs[1].contains("short.rs: 800 lines now"), "{}", errs[1]);
        assert!(
            errs[2].contains("gone.rs: listed in LONG_FILES but"),
            "{}",
            errs[2]
        );
        assert!(errs[3].contains("unreasoned.rs: listed in LONG_FILES without a reason"));
        assert!(check_sizes(&files[1..2], &allowed[..1]).is_empty());
        // A file being split may get short before its entry goes.
        assert!(check_sizes(&files[2..3], &[("crates/a/src/short.rs", BEING_SPLIT)]).is_empty());
    }
}
