//! `orch schema` (the workflow format's JSON Schema, for editors) and `orch completions SHELL`.

use crate::exit;

/// `orch schema`: the JSON Schema of the workflow format, with the
/// parameters of every built-in action, as pretty JSON on stdout.
pub fn schema() -> u8 {
    let catalog = orch_engine::action_catalog(&orch_engine::ActionRegistry::with_builtins());
    let schema = orch_model::definition::workflow_schema(Some(&catalog));
    match serde_json::to_string_pretty(&schema) {
        Ok(text) => {
            println!("{text}");
            exit::OK
        }
        Err(e) => {
            eprintln!("orch: cannot write the schema: {e}");
            exit::INTERNAL
        }
    }
}

/// `orch completions SHELL`: the completion script for the shell, on stdout.
pub fn completions(shell: clap_complete::Shell) -> u8 {
    let mut cmd = <crate::Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "orch", &mut script);
    print!("{}", String::from_utf8_lossy(&script));
    exit::OK
}
