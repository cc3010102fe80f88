//! `on_failure:` and `finally:` steps, `phase`, `cancel_grace` and the trigger rules over all upstream steps, as definitions read them.

use orch_model::{
    Format, Limits, Phase, RunIf, RunSettings, SavedRun, ValidWorkflow, Workflow, WorkflowStep,
    load_workflow,
};
use std::time::Duration;

fn load(text: &str) -> ValidWorkflow {
    match load_workflow(text, Format::Yaml, &Limits::default(), Some("wf.yaml")) {
        Ok(wf) => wf,
        Err(d) => panic!("{}", d.lines().collect::<Vec<_>>().join("\n")),
    }
}

fn problems(text: &str) -> Vec<String> {
    match load_workflow(text, Format::Yaml, &Limits::default(), Some("wf.yaml")) {
        Ok(_) => panic!("expected problems"),
        Err(d) => d.lines().collect(),
    }
}

/// The names of step `name`'s dependencies in the graph (declared and implicit), sorted.
fn deps(wf: &ValidWorkflow, name: &str) -> Vec<String> {
    let steps = &wf.workflow().steps;
    let i = steps.iter().position(|s| s.name == name).expect("step");
    let mut d: Vec<String> = wf
        .graph()
        .deps(i as u32)
        .iter()
        .map(|&j| steps[j as usize].name.to_string())
        .collect();
    d.sort();
    d
}

const HOOKS: &str = "\
name: hooks
cancel_grace: 10s
steps:
  - {name: a, module: core, action: noop}
  - {name: b, module: core, action: noop, dependencies: [a]}
  - {name: c, module: core, action: noop, dependencies: [a]}
  - {name: lone, module: core, action: noop}
on_failure:
  - {name: alert, module: core, action: noop}
  - {name: page, module: core, action: noop, dependencies: [alert]}
finally:
  - {name: cleanup, module: core, action: set, parameters: {value: '${b.status}'}}
  - name: report
    module: core
    action: noop
    dependencies: [cleanup]
    conditions: {run_if: none_failed}
";

#[test]
fn hook_steps_follow_the_main_steps_with_their_phase_and_rule() {
    let wf = load(HOOKS);
    let w = wf.workflow();
    assert_eq!(w.cancel_grace, Some(Duration::from_secs(10)));
    let phases: Vec<(&str, Phase, RunIf)> = w
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.phase, s.conditions.run_if))
        .collect();
    assert_eq!(
        phases,
        [
            ("a", Phase::Main, RunIf::Success),
            ("b", Phase::Main, RunIf::Success),
            ("c", Phase::Main, RunIf::Success),
            ("lone", Phase::Main, RunIf::Success),
            ("alert", Phase::OnFailure, RunIf::OneFailed),
            ("page", Phase::OnFailure, RunIf::OneFailed),
            ("cleanup", Phase::Finally, RunIf::AllDone),
            ("report", Phase::Finally, RunIf::NoneFailed),
        ]
    );
    // The first step of each list waits for the sinks of everything before it.
    assert_eq!(deps(&wf, "alert"), ["b", "c", "lone"]);
    assert_eq!(deps(&wf, "page"), ["alert"]);
    // A reference to a main step is a dependency of the step's own; the
    // step names no step of its phase, so it also gets the sinks.
    assert_eq!(deps(&wf, "cleanup"), ["b", "page"]);
    assert_eq!(deps(&wf, "report"), ["cleanup"]);
    assert_eq!(
        wf.execution_order().last().map(Vec::as_slice),
        Some(&["report".to_owned()][..])
    );
}

#[test]
fn the_saved_form_keeps_phases_rules_and_the_grace() {
    let wf = load(HOOKS);
    let text = SavedRun::write_json(wf.workflow(), &RunSettings::default()).expect("json");
    assert!(text.contains("\"phase\":\"finally\""), "{text}");
    let back = SavedRun::from_json(&text).expect("read back");
    assert_eq!(back.workflow.workflow(), wf.workflow());
    assert_eq!(back.workflow.graph(), wf.graph());
    // And the pretty form too.
    let again = load_workflow(
        &wf.workflow().to_json_pretty(),
        Format::Json,
        &Limits::default(),
        None,
    )
    .expect("pretty form");
    assert_eq!(again.workflow(), wf.workflow());
}

#[test]
fn no_main_step_may_depend_on_a_later_phase() {
    let p = problems(
        "name: w\nsteps:\n  - {name: a, module: core, action: set, parameters: {value: '${cleanup.result}'}}\nfinally:\n  - {name: cleanup, module: core, action: noop}\n",
    );
    assert!(
        p.iter()
            .any(|l| l.contains("step `a` (main) cannot depend on `cleanup`, a step of finally")),
        "{p:?}"
    );
    let p = problems(
        "name: w\nsteps:\n  - {name: a, module: core, action: noop}\non_failure:\n  - {name: alert, module: core, action: noop, dependencies: [done]}\nfinally:\n  - {name: done, module: core, action: noop}\n",
    );
    assert!(
        p.iter()
            .any(|l| l.contains("step `alert` (on_failure) cannot depend on `done`")),
        "{p:?}"
    );
}

#[test]
fn a_phase_out_of_place_is_reported_at_its_line() {
    let p = problems(
        "name: w\nsteps:\n  - {name: a, module: core, action: noop}\nfinally:\n  - {name: b, module: core, action: noop, phase: on_failure}\n",
    );
    assert!(
        p.iter().any(|l| l.contains("wf.yaml:5")
            && l.contains("phase `on_failure` does not match the list it is in (`finally:`)")),
        "{p:?}"
    );
    let p = problems(
        "name: w\nsteps:\n  - {name: z, module: core, action: noop, phase: finally}\n  - {name: a, module: core, action: noop}\n",
    );
    assert!(
        p.iter()
            .any(|l| l.contains("step `a` of phase main comes after a step of phase finally")),
        "{p:?}"
    );
    let p = problems("name: w\nsteps:\n  - {name: a, module: core, action: noop, phase: later}\n");
    assert!(
        p.iter().any(|l| l.contains("`later` is not a valid Phase")),
        "{p:?}"
    );
    let p = problems(
        "name: w\nsteps:\n  - {name: a, module: core, action: noop, conditions: {run_if: some_failed}}\n",
    );
    assert!(
        p.iter()
            .any(|l| l.contains("all_success, all_done, one_failed, none_failed")),
        "{p:?}"
    );
}

#[test]
fn a_hook_list_alone_or_empty_is_fine_and_names_stay_unique() {
    let wf = load(
        "name: w\nsteps:\n  - {name: a, module: core, action: noop}\non_failure: []\nfinally:\n  - {name: f, module: core, action: noop}\n",
    );
    assert_eq!(deps(&wf, "f"), ["a"]);
    let p = problems(
        "name: w\nsteps:\n  - {name: a, module: core, action: noop}\nfinally:\n  - {name: a, module: core, action: noop}\n",
    );
    assert!(
        p.iter().any(|l| l.contains("duplicate step name `a`")),
        "{p:?}"
    );
    let p =
        problems("name: w\nsteps:\n  - {name: a, module: core, action: noop}\nfinally: {x: 1}\n");
    assert!(
        p.iter().any(|l| l.contains("expected a list of steps")),
        "{p:?}"
    );
    let p =
        problems("name: w\ncancel_grace: -1\nsteps:\n  - {name: a, module: core, action: noop}\n");
    assert!(p.iter().any(|l| l.contains("cancel_grace")), "{p:?}");
}

#[test]
fn steps_built_in_code_get_the_same_phases() {
    let wf = Workflow::new("code", "")
        .step(WorkflowStep::new("a", "core", "noop"))
        .step(WorkflowStep::new("b", "core", "noop").phase(Phase::OnFailure))
        .step(WorkflowStep::new("c", "core", "noop").phase(Phase::Finally));
    let wf = orch_model::definition::validate(wf, &Limits::default()).expect("valid");
    assert_eq!(wf.workflow().steps[1].conditions.run_if, RunIf::OneFailed);
    assert_eq!(wf.workflow().steps[2].conditions.run_if, RunIf::AllDone);
    assert_eq!(deps(&wf, "b"), ["a"]);
    assert_eq!(deps(&wf, "c"), ["b"]);
}
