//! The schema's types against the decoder's fields, and the parameters of declared actions.

use super::*;
use crate::actions::ParamSpec;
use crate::definition::decode::fields::{
    CACHE_FIELDS, CONDITIONS_FIELDS, DEFAULTS_FIELDS, RETRY_FIELDS, SECRET_FIELDS, STEP_FIELDS,
    WHEN_FIELDS, WORKFLOW_FIELDS,
};

fn keys(schema: &Value, pointer: &str) -> Vec<String> {
    let mut k: Vec<String> = schema
        .pointer(pointer)
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("no {pointer} in {schema:#}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

fn sorted(fields: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = fields.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

#[test]
fn every_map_of_the_schema_has_exactly_the_decoders_fields() {
    let s = workflow_schema(None);
    assert_eq!(keys(&s, "/properties"), sorted(WORKFLOW_FIELDS));
    assert_eq!(
        keys(&s, "/definitions/Step/properties"),
        sorted(STEP_FIELDS)
    );
    assert_eq!(
        keys(&s, "/definitions/Defaults/properties"),
        sorted(DEFAULTS_FIELDS)
    );
    assert_eq!(
        keys(&s, "/definitions/Retry/properties"),
        sorted(RETRY_FIELDS)
    );
    assert_eq!(
        keys(&s, "/definitions/Conditions/properties"),
        sorted(CONDITIONS_FIELDS)
    );
    assert_eq!(
        keys(&s, "/definitions/When/properties"),
        sorted(WHEN_FIELDS)
    );
    assert_eq!(
        keys(&s, "/definitions/SecretSource/properties"),
        sorted(SECRET_FIELDS)
    );
    assert_eq!(
        keys(&s, "/definitions/CacheOptions/properties"),
        sorted(CACHE_FIELDS)
    );
    assert_eq!(
        keys(&s, "/definitions/ConcurrencyFile/properties"),
        sorted(crate::definition::decode::fields::CONCURRENCY_FIELDS)
    );
    // Unknown fields are errors in the decoder, so they are in the schema.
    for p in [
        "",
        "/definitions/Step",
        "/definitions/Defaults",
        "/definitions/Retry",
    ] {
        assert_eq!(
            s.pointer(&format!("{p}/additionalProperties")),
            Some(&Value::Bool(false)),
            "{p}"
        );
    }
    assert_eq!(s["required"], json!(["name", "steps"]));
    assert_eq!(
        s["definitions"]["Step"]["required"],
        json!(["name", "module", "action"])
    );
    assert_eq!(
        s["$schema"],
        json!("http://json-schema.org/draft-07/schema#")
    );
    // Doc comments are the descriptions editors show.
    assert!(
        s["definitions"]["Step"]["properties"]["dependencies"]["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("Names of the steps")),
        "{:#}",
        s["definitions"]["Step"]["properties"]["dependencies"]
    );
}

#[test]
fn enumerations_come_from_the_models_lists() {
    let s = workflow_schema(None);
    let priority = &s["definitions"]["Step"]["properties"]["priority"]["anyOf"][0]["enum"];
    assert_eq!(*priority, json!(["low", "normal", "high", "critical"]));
    let run_if = &s["definitions"]["Conditions"]["properties"]["run_if"]["enum"];
    assert_eq!(
        run_if.as_array().map(Vec::len),
        Some(RunIf::ALL.len()),
        "{run_if}"
    );
}

static SLEEP: ActionSpec = ActionSpec {
    description: "Waits.",
    params: &[
        ParamSpec::required("ms", ParamType::INTEGER, "milliseconds"),
        ParamSpec::optional("note", ParamType::STRING, "a note"),
    ],
    open: false,
};

#[test]
fn declared_actions_give_their_parameters_a_schema() {
    let mut c = ActionCatalog::new();
    c.add_action("core", "sleep", Some(&SLEEP));
    c.add_action("core", "noop", None);
    c.add_module("external");
    let s = workflow_schema(Some(&c));
    let rules = s["definitions"]["Step"]["allOf"].as_array().expect("rules");
    // Only actions that declare parameters have a rule.
    assert_eq!(rules.len(), 1, "{rules:#?}");
    let rule = &rules[0];
    assert_eq!(rule["if"]["properties"]["module"]["const"], "core");
    assert_eq!(rule["if"]["properties"]["action"]["const"], "sleep");
    let params = &rule["then"]["properties"]["parameters"];
    assert_eq!(rule["then"]["required"], json!(["parameters"]));
    assert_eq!(params["required"], json!(["ms"]));
    assert_eq!(params["additionalProperties"], json!(false));
    // A whole number, or one `${...}` reference standing for one.
    assert_eq!(
        params["properties"]["ms"]["anyOf"][0]["type"],
        json!(["integer"])
    );
    assert_eq!(
        params["properties"]["note"]["type"],
        json!(["string", "null"])
    );
}
