//! Times the phases of reading a large definition: parse, decode, validate (a profiling aid).

use orch_benches::Workload;
use orch_model::definition::{parse_definition, validate_with_sources};
use orch_model::node::parse;
use orch_model::{Format, Limits};
use std::time::Instant;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let text = Workload::Layered.definition_json(n);
    let limits = Limits::default();
    let t = Instant::now();
    let tree = parse(&text, Format::Json, &limits).map(|_| ());
    println!(
        "parse to tree (incl. drop): {:?} {:?}",
        t.elapsed(),
        tree.is_ok()
    );
    let t = Instant::now();
    let decoded = parse_definition(&text, Format::Json, &limits);
    println!("parse + decode: {:?}", t.elapsed());
    let Ok((wf, map)) = decoded else { return };
    let t = Instant::now();
    let valid = validate_with_sources(wf, &map, &limits, None);
    println!("validate: {:?} {}", t.elapsed(), valid.is_ok());
    let t = Instant::now();
    drop(valid);
    println!("drop: {:?}", t.elapsed());
}
