//! `data.aggregate`: CSV files in, aggregated JSON out.
//!
//! Each CSV file of `input` (a header row, then records; RFC 4180 quoting)
//! becomes `<output>/<file stem>.json` with, for every column whose
//! non-empty values are all numbers, `count`, `sum`, `min`, `max` and
//! `mean`, and for the other columns the number of distinct values. With
//! `group_by`, the same statistics are computed per value of that column.
//! A `summary.json` beside them lists every file's rows and columns. Files
//! are written atomically; a malformed CSV file fails the step and names the
//! file and record.
//!
//! Both directories are resolved beneath the work directory without following
//! links (see [`crate::confined`]): absolute paths, `..` and links along them
//! are refused, every file is opened and written through its directory's
//! descriptor, links among the input files are skipped, and a CSV file with
//! more than one hard link is refused, as `fs.read` refuses it.

use super::fs::{blocking, confined_error, work_root};
use crate::action::{Action, ActionContext, ActionError};
use crate::confined::{EntryKind, Root};
use async_trait::async_trait;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Most records read from one file.
const MAX_RECORDS: usize = 10_000_000;

#[derive(Debug, Default, Clone)]
struct Column {
    numeric: bool,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    distinct: BTreeSet<String>,
}

impl Column {
    fn new() -> Self {
        Self {
            numeric: true,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            ..Self::default()
        }
    }

    fn add(&mut self, raw: &str) {
        let v = raw.trim();
        if v.is_empty() {
            return;
        }
        self.count += 1;
        match v.parse::<f64>() {
            Ok(n) if n.is_finite() && self.numeric => {
                self.sum += n;
                self.min = self.min.min(n);
                self.max = self.max.max(n);
            }
            _ => self.numeric = false,
        }
        // Distinct values are kept for text columns only, and only up to a bound.
        if self.distinct.len() < 10_000 {
            self.distinct.insert(v.to_owned());
        }
    }

    fn to_json(&self) -> Value {
        if self.numeric && self.count > 0 {
            json!({
                "type": "number",
                "count": self.count,
                "sum": round(self.sum),
                "min": round(self.min),
                "max": round(self.max),
                "mean": round(self.sum / self.count as f64),
            })
        } else {
            json!({"type": "text", "count": self.count, "distinct": self.distinct.len()})
        }
    }
}

fn round(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

struct Table {
    headers: Vec<String>,
    columns: Vec<Column>,
    groups: BTreeMap<String, (u64, Vec<Column>)>,
    rows: u64,
}

fn aggregate(
    file: impl std::io::Read,
    shown: &str,
    group_by: Option<&str>,
) -> Result<Table, ActionError> {
    let bad = |msg: String| ActionError::permanent("DataError", format!("`{shown}`: {msg}"));
    let mut rdr = csv::ReaderBuilder::new().flexible(false).from_reader(file);
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| bad(format!("cannot read the header row: {e}")))?
        .iter()
        .map(str::to_owned)
        .collect();
    if headers.is_empty() {
        return Err(bad("the file has no header row".into()));
    }
    let group_col = match group_by {
        None => None,
        Some(g) => Some(headers.iter().position(|h| h == g).ok_or_else(|| {
            bad(format!(
                "`group_by` names column `{g}`, which the file does not have; columns: {}",
                headers.join(", ")
            ))
        })?),
    };
    let mut t = Table {
        columns: vec![Column::new(); headers.len()],
        headers,
        groups: BTreeMap::new(),
        rows: 0,
    };
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| bad(format!("record {}: {e}", i + 1)))?;
        if i >= MAX_RECORDS {
            return Err(bad(format!("more than {MAX_RECORDS} records")));
        }
        t.rows += 1;
        for (c, v) in t.columns.iter_mut().zip(rec.iter()) {
            c.add(v);
        }
        if let Some(g) = group_col {
            let key = rec.get(g).unwrap_or_default().trim().to_owned();
            let n = t.headers.len();
            let entry = t
                .groups
                .entry(key)
                .or_insert_with(|| (0, vec![Column::new(); n]));
            entry.0 += 1;
            for (c, v) in entry.1.iter_mut().zip(rec.iter()) {
                c.add(v);
            }
        }
    }
    Ok(t)
}

fn columns_json(headers: &[String], cols: &[Column], skip: Option<&str>) -> Map<String, Value> {
    headers
        .iter()
        .zip(cols)
        .filter(|(h, _)| Some(h.as_str()) != skip)
        .map(|(h, c)| (h.clone(), c.to_json()))
        .collect()
}

/// The output directory, made (with its parents) beneath the work directory.
fn output_dir(root: &Root, output: &str) -> Result<Root, ActionError> {
    root.create_dir_all(output)
        .map(|(dir, _)| dir)
        .map_err(|e| confined_error("cannot create", output, &e))
}

/// Writes `text` to `name` in the output directory (by its descriptor).
fn write_in(dir: &Root, output: &str, name: &str, text: &str) -> Result<(), ActionError> {
    let shown = format!("{output}/{name}");
    dir.write_bytes(name, text.as_bytes(), false)
        .map_err(|mut e| {
            e.path = Path::new(&shown).to_path_buf();
            confined_error("cannot write", &shown, &e)
        })
}

fn rel_param(params: &Value, key: &str, default: &str) -> Result<String, ActionError> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(default.to_owned()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(ActionError::invalid_parameters(format!(
            "`{key}` must be a relative directory path, found {other}"
        ))),
    }
}

/// `data.aggregate {input = "data/raw", output = "data/processed", group_by = ""}` →
/// `{files, rows, outputs: [paths], rows_by_file: {stem: rows}, summary}`.
#[derive(Debug)]
pub struct Aggregate;

#[async_trait]
impl Action for Aggregate {
    fn spec(&self) -> Option<&'static orch_model::ActionSpec> {
        Some(&super::specs::AGGREGATE)
    }

    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let input = rel_param(&params, "input", "data/raw")?;
        let output = rel_param(&params, "output", "data/processed")?;
        let group_by = match params.get("group_by") {
            None | Some(Value::Null) => None,
            // An empty name means no grouping (workflow parameters cannot be null).
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(ActionError::invalid_parameters(format!(
                    "`group_by` must be a column name, found {other}"
                )));
            }
        };
        let root = work_root(ctx)?;
        root.check(&input)
            .map_err(|e| confined_error("cannot read directory", &input, &e))?;
        root.check(&output)
            .map_err(|e| confined_error("cannot write to", &output, &e))?;
        blocking(move || {
            let in_dir = root
                .open_dir(&input)
                .map_err(|e| confined_error("cannot read directory", &input, &e))?;
            let mut files: Vec<_> = in_dir
                .list(".")
                .map_err(|e| confined_error("cannot read directory", &input, &e))?
                .into_iter()
                // Links are not followed: only regular files count.
                .filter(|e| {
                    e.kind == EntryKind::File
                        && Path::new(&e.name)
                            .extension()
                            .is_some_and(|x| x.eq_ignore_ascii_case("csv"))
                })
                .map(|e| e.name)
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(ActionError::permanent(
                    "DataError",
                    format!("`{input}` holds no .csv files; put CSV files with a header row there"),
                ));
            }
            let mut outputs = Vec::new();
            let mut summary = Map::new();
            let mut rows_by_file = Map::new();
            let mut total = 0u64;
            // Made when the first file has been read, as the first write made it before.
            let mut out_dir: Option<Root> = None;
            for f in &files {
                let stem = Path::new(f)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let shown = format!("{input}/{stem}.csv");
                let file = in_dir.open_file(f).map_err(|mut e| {
                    e.path = Path::new(&input).join(f);
                    confined_error("cannot read", &shown, &e)
                })?;
                let t = aggregate(file, &shown, group_by.as_deref())?;
                total += t.rows;
                let mut doc = json!({
                    "source": shown,
                    "rows": t.rows,
                    "columns": columns_json(&t.headers, &t.columns, None),
                });
                if let Some(g) = &group_by {
                    let groups: Map<String, Value> = t
                        .groups
                        .iter()
                        .map(|(k, (n, cols))| {
                            (k.clone(), json!({"rows": n, "columns": columns_json(&t.headers, cols, Some(g))}))
                        })
                        .collect();
                    doc["group_by"] = json!(g);
                    doc["groups"] = Value::Object(groups);
                }
                let name = format!("{stem}.json");
                let text = serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
                let dir = match out_dir.take() {
                    Some(d) => d,
                    None => output_dir(&root, &output)?,
                };
                write_in(&dir, &output, &name, &text)?;
                out_dir = Some(dir);
                outputs.push(json!(format!("{output}/{name}")));
                rows_by_file.insert(stem.clone(), json!(t.rows));
                summary.insert(stem, json!({"rows": t.rows, "columns": t.headers}));
            }
            let summary_doc = json!({"files": summary, "rows": total, "rows_by_file": rows_by_file});
            let text = serde_json::to_string_pretty(&summary_doc).unwrap_or_default() + "\n";
            let dir = match out_dir {
                Some(d) => d,
                None => output_dir(&root, &output)?,
            };
            write_in(&dir, &output, "summary.json", &text)?;
            Ok(json!({
                "files": files.len(),
                "rows": total,
                "outputs": outputs,
                "rows_by_file": rows_by_file,
                "summary": format!("{output}/summary.json"),
            }))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(p: &Path) -> std::fs::File {
        std::fs::File::open(p).expect("open")
    }

    #[test]
    fn numeric_and_text_columns_and_groups() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("sales.csv");
        std::fs::write(&p, "region,amount,note\neu,10,\"a, b\"\nus,5.5,x\neu,2,\n").expect("write");
        let t = aggregate(open(&p), "sales.csv", Some("region")).expect("aggregate");
        assert_eq!(t.rows, 3);
        let cols = columns_json(&t.headers, &t.columns, None);
        assert_eq!(
            cols["amount"],
            json!({"type": "number", "count": 3, "sum": 17.5, "min": 2.0, "max": 10.0, "mean": round(17.5 / 3.0)})
        );
        assert_eq!(
            cols["note"],
            json!({"type": "text", "count": 2, "distinct": 2})
        );
        let (n, eu) = &t.groups["eu"];
        assert_eq!(*n, 2);
        assert_eq!(
            columns_json(&t.headers, eu, Some("region"))["amount"]["sum"],
            json!(12.0)
        );
    }

    #[test]
    fn ragged_rows_and_unknown_group_columns_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("bad.csv");
        std::fs::write(&p, "a,b\n1,2\n3\n").expect("write");
        let e = aggregate(open(&p), "bad.csv", None).err().expect("ragged");
        assert!(e.message.contains("`bad.csv`: record 2"), "{}", e.message);
        std::fs::write(&p, "a,b\n1,2\n").expect("write");
        let e = aggregate(open(&p), "bad.csv", Some("c"))
            .err()
            .expect("unknown column");
        assert!(e.message.contains("columns: a, b"), "{}", e.message);
    }
}
