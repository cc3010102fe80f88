//! Tidy: the engine is the one door. orch-cli reaches the project's crates through orch-engine (and orch-model) only, and nothing below orch-engine depends on a store backend.

use super::{
    DepKind, LAYERS, Member, STORES, layer, normal_closure, report, resolved_metadata,
    workspace_members,
};
use std::collections::BTreeMap;

/// The crate whose dependencies [`check_cli_deps`] checks.
const CLI: &str = "orch-cli";
/// The engine: the CLI's door, and the layer below which no crate picks a store.
const ENGINE: &str = "orch-engine";

/// Crates below orch-engine that orch-cli may still depend on while code
/// moves into the engine (none since issue 11: every run goes through
/// `OrchestrationEngine::run`).
const TEMPORARY_CLI_DEPS: &[&str] = &[];

/// Among the project's library crates, orch-cli depends (in any way) on
/// orch-engine, orch-model and crates above the engine only (SPEC §8a: the
/// server crates). `temporary` are tolerated for now.
fn check_cli_deps(members: &[Member], temporary: &[&str]) -> Vec<String> {
    let Some(cli) = members.iter().find(|m| m.name == CLI) else {
        return vec![format!("`{CLI}` is not a workspace member")];
    };
    let engine = layer(ENGINE).unwrap_or(u32::MAX);
    let mut errs = Vec::new();
    for dep in &cli.deps {
        let to = dep.name.as_str();
        let below = match layer(to) {
            Some(l) => l < engine && to != "orch-model",
            None => STORES.contains(&to),
        };
        if below && !temporary.contains(&to) {
            errs.push(format!(
                "`{CLI}` has a {} on `{to}`: the CLI reaches the project's crates through \
                 orch-engine (and orch-model's types) only; use what orch-engine offers (add \
                 it there if it is missing) and remove `{to}` from crates/{CLI}/Cargo.toml",
                dep.kind
            ));
        }
    }
    errs
}

/// No crate below orch-engine depends on a store backend: not directly (of
/// any kind) and not through its normal dependencies. `closures` maps each
/// crate below the engine to its normal-dependency closure (crate -> the
/// path that reaches it).
fn check_no_backend_below_engine(
    members: &[Member],
    closures: &BTreeMap<String, BTreeMap<String, Vec<String>>>,
) -> Vec<String> {
    let engine = layer(ENGINE).unwrap_or(u32::MAX);
    let below = |name: &str| layer(name).is_some_and(|l| l < engine);
    let mut errs = Vec::new();
    for m in members.iter().filter(|m| below(&m.name)) {
        for dep in m.deps.iter().filter(|d| STORES.contains(&d.name.as_str())) {
            errs.push(format!(
                "`{}` has a {} on the store backend `{}`: below orch-engine, code takes an \
                 `Arc<dyn Store>` (orch-model) and never opens a backend; remove it from \
                 {}/Cargo.toml (a test that needs a store uses orch-model's testkit or an \
                 in-memory store)",
                m.name, dep.kind, dep.name, m.dir
            ));
        }
    }
    for (name, tree) in closures.iter().filter(|(n, _)| below(n)) {
        for store in STORES {
            let Some(path) = tree.get(*store) else {
                continue;
            };
            // A direct normal edge is reported above, with its manifest.
            if path.len() > 2 {
                errs.push(format!(
                    "`{name}` depends on the store backend `{store}` through {}: below \
                     orch-engine nothing opens a backend; cut that dependency",
                    path.join(" -> ")
                ));
            }
        }
    }
    errs
}

#[test]
fn the_cli_depends_on_the_engine_and_the_model_only() {
    report(
        "the engine is the CLI's one door (issue 11, SPEC §8a)",
        &check_cli_deps(&workspace_members(), TEMPORARY_CLI_DEPS),
    );
}

#[test]
fn nothing_below_the_engine_depends_on_a_store_backend() {
    let engine = layer(ENGINE).unwrap_or(u32::MAX);
    let closures: BTreeMap<String, BTreeMap<String, Vec<String>>> = LAYERS
        .iter()
        .filter(|(_, l)| *l < engine)
        .map(|(n, _)| {
            let tree =
                normal_closure(resolved_metadata(), n).unwrap_or_else(|e| panic!("tidy: {e}"));
            ((*n).to_owned(), tree)
        })
        .collect();
    // Guards the walk itself: orch-tasks reaches orch-model.
    assert!(
        closures
            .get("orch-tasks")
            .is_some_and(|t| t.contains_key("orch-model")),
        "tidy: the walk of the resolved dependencies below orch-engine missed orch-model"
    );
    report(
        "nothing below orch-engine opens a store backend (SPEC §2)",
        &check_no_backend_below_engine(&workspace_members(), &closures),
    );
}

mod tests {
    //! The checks on synthetic workspaces.

    use super::*;
    use crate::tidy::Dep;

    fn member(name: &str, deps: &[(&str, DepKind)]) -> Member {
        Member {
            name: name.into(),
            dir: format!("crates/{name}"),
            deps: deps
                .iter()
                .map(|(d, kind)| Dep {
                    name: (*d).into(),
                    kind: *kind,
                })
                .collect(),
        }
    }

    #[test]
    fn the_cli_may_use_the_engine_the_model_and_outside_crates() {
        use DepKind::*;
        let good = [member(
            CLI,
            &[
                ("orch-engine", Normal),
                ("orch-model", Normal),
                ("clap", Normal),
                ("rusqlite", Dev),
            ],
        )];
        assert!(check_cli_deps(&good, &[]).is_empty());
        let bad = [member(
            CLI,
            &[
                ("orch-engine", Normal),
                ("orch-tasks", Normal),
                ("orch-resources", Dev),
                ("orch-store-sqlite", Normal),
                ("orch-workflows", Normal),
            ],
        )];
        let errs = check_cli_deps(&bad, &["orch-workflows", "orch-projects"]);
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(
            errs[0].contains("a dependency on `orch-tasks`"),
            "{}",
            errs[0]
        );
        assert!(
            errs[1].contains("a dev-dependency on `orch-resources`"),
            "{}",
            errs[1]
        );
        assert!(errs[2].contains("`orch-store-sqlite`"), "{}", errs[2]);
        assert_eq!(check_cli_deps(&[], &[]).len(), 1);
    }

    #[test]
    fn no_crate_below_the_engine_reaches_a_backend() {
        use DepKind::*;
        let members = [
            member(
                "orch-tasks",
                &[("orch-model", Normal), ("orch-store-sqlite", Dev)],
            ),
            member("orch-engine", &[("orch-store-sqlite", Normal)]),
            member("orch-workflows", &[("orch-tasks", Normal)]),
        ];
        let path = |p: &[&str]| p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let closures = BTreeMap::from([
            (
                "orch-workflows".to_owned(),
                BTreeMap::from([(
                    "orch-store-postgres".to_owned(),
                    path(&["orch-workflows", "helper", "orch-store-postgres"]),
                )]),
            ),
            (
                "orch-engine".to_owned(),
                BTreeMap::from([(
                    "orch-store-sqlite".to_owned(),
                    path(&["orch-engine", "orch-store-sqlite"]),
                )]),
            ),
        ]);
        let errs = check_no_backend_below_engine(&members, &closures);
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert!(
            errs[0].contains("`orch-tasks` has a dev-dependency on the store backend"),
            "{}",
            errs[0]
        );
        assert!(
            errs[1].contains("through orch-workflows -> helper -> orch-store-postgres"),
            "{}",
            errs[1]
        );
    }
}
