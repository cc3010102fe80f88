//! `chart.bar` and `chart.line`: SVG charts with axes, ticks, labels and a title.
//!
//! Data is a `{label: number}` object (in its order), a list of numbers, a
//! list of `[x, y]` pairs, or a list of `{label|x, value|y}` objects. The SVG
//! is self-contained (no scripts, no external fonts or styles), every text is
//! XML-escaped, and it is written atomically to `output` inside the work
//! directory, resolved beneath it without following links (see
//! [`crate::confined`]): absolute paths, `..` and links are refused.

use super::fs::{blocking, confined_error, path_param, work_root};
use crate::action::{Action, ActionContext, ActionError};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::fmt::Write as _;

/// Most points one chart draws.
const MAX_POINTS: usize = 10_000;

/// One data point: its label on the x axis and its value.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    label: String,
    value: f64,
}

fn number(v: &Value, what: &str) -> Result<f64, ActionError> {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        // Numbers that arrive as text (from a command's output) are accepted.
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    n.filter(|x| x.is_finite()).ok_or_else(|| {
        ActionError::invalid_parameters(format!("{what}: {v} is not a finite number"))
    })
}

fn label_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Reads `data` in any of the accepted shapes.
fn points(data: Option<&Value>) -> Result<Vec<Point>, ActionError> {
    let data = data.ok_or_else(|| {
        ActionError::invalid_parameters(
            "`data` is required: a {label: number} object or a list of numbers, [x, y] pairs or {label, value} objects",
        )
    })?;
    let pts: Vec<Point> = match data {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                Ok(Point {
                    label: k.clone(),
                    value: number(v, &format!("data.{k}"))?,
                })
            })
            .collect::<Result<_, ActionError>>()?,
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Array(pair) if pair.len() == 2 => Ok(Point {
                    label: label_of(&pair[0]),
                    value: number(&pair[1], &format!("data[{i}][1]"))?,
                }),
                Value::Object(o) => {
                    let label = o
                        .get("label")
                        .or_else(|| o.get("x"))
                        .map_or_else(|| (i + 1).to_string(), label_of);
                    let value = o.get("value").or_else(|| o.get("y")).ok_or_else(|| {
                        ActionError::invalid_parameters(format!(
                            "data[{i}] has no `value` (or `y`)"
                        ))
                    })?;
                    Ok(Point {
                        label,
                        value: number(value, &format!("data[{i}].value"))?,
                    })
                }
                other => Ok(Point {
                    label: (i + 1).to_string(),
                    value: number(other, &format!("data[{i}]"))?,
                }),
            })
            .collect::<Result<_, ActionError>>()?,
        other => {
            return Err(ActionError::invalid_parameters(format!(
                "`data` must be an object or a list, found {other}"
            )));
        }
    };
    if pts.len() > MAX_POINTS {
        return Err(ActionError::invalid_parameters(format!(
            "`data` has {} points; a chart draws at most {MAX_POINTS}",
            pts.len()
        )));
    }
    Ok(pts)
}

/// Escapes text for SVG content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 forbids are dropped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// A "nice" axis from `lo` to `hi`: rounded bounds and a tick step of 1, 2 or 5 × 10^k.
fn nice_axis(lo: f64, hi: f64) -> (f64, f64, f64) {
    let (lo, hi) = if (hi - lo).abs() < f64::EPSILON {
        if hi == 0.0 {
            (0.0, 1.0)
        } else {
            (lo.min(0.0), hi.max(0.0) + hi.abs() * 0.1)
        }
    } else {
        (lo, hi)
    };
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((lo / step).floor() * step, (hi / step).ceil() * step, step)
}

fn fmt_num(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Bar,
    Line,
}

struct Options {
    title: String,
    x_label: String,
    y_label: String,
    width: f64,
    height: f64,
    color: String,
}

fn options(params: &Value, kind: Kind) -> Result<Options, ActionError> {
    let text = |k: &str| params.get(k).map(label_of).unwrap_or_default();
    let dim = |k: &str, default: f64| -> Result<f64, ActionError> {
        match params.get(k) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => {
                let n = number(v, k)?;
                if (200.0..=4000.0).contains(&n) {
                    Ok(n)
                } else {
                    Err(ActionError::invalid_parameters(format!(
                        "`{k}` must be between 200 and 4000 pixels, found {n}"
                    )))
                }
            }
        }
    };
    let color = params
        .get("color")
        .and_then(Value::as_str)
        .unwrap_or(if kind == Kind::Bar {
            "#4e79a7"
        } else {
            "#e15759"
        });
    // Only plain colour names and #hex: the value goes into an attribute.
    if !color.chars().all(|c| c.is_ascii_alphanumeric() || c == '#') || color.len() > 32 {
        return Err(ActionError::invalid_parameters(format!(
            "`color` must be a colour name or #hex, found `{}`",
            shorten(color, 40)
        )));
    }
    Ok(Options {
        title: text("title"),
        x_label: text("x_label"),
        y_label: text("y_label"),
        width: dim("width", 800.0)?,
        height: dim("height", 480.0)?,
        color: color.to_owned(),
    })
}

/// Draws the chart as an SVG document (empty data draws the frame and "No data").
fn render(kind: Kind, pts: &[Point], o: &Options) -> String {
    let (w, h) = (o.width, o.height);
    if pts.is_empty() {
        return format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="Helvetica, Arial, sans-serif" font-size="12">
<rect width="{w}" height="{h}" fill="#ffffff"/>
<text x="{}" y="30" text-anchor="middle" font-size="18" font-weight="bold" fill="#222">{}</text>
<text x="{}" y="{}" text-anchor="middle" font-size="16" fill="#888">No data</text>
</svg>
"##,
            w / 2.0,
            esc(&shorten(&o.title, 80)),
            w / 2.0,
            h / 2.0
        );
    }
    let many = pts.len() > 8;
    let (left, right, top) = (72.0, 24.0, if o.title.is_empty() { 24.0 } else { 52.0 });
    let bottom = if many { 110.0 } else { 64.0 };
    let (pw, ph) = (w - left - right, h - top - bottom);
    let lo = pts.iter().map(|p| p.value).fold(f64::INFINITY, f64::min);
    let hi = pts
        .iter()
        .map(|p| p.value)
        .fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if kind == Kind::Bar {
        (lo.min(0.0), hi.max(0.0))
    } else {
        (lo, hi)
    };
    let (amin, amax, step) = nice_axis(lo, hi);
    let y_of = |v: f64| top + ph - (v - amin) / (amax - amin) * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="Helvetica, Arial, sans-serif" font-size="12">"##
    );
    let _ = writeln!(s, r##"<rect width="{w}" height="{h}" fill="#ffffff"/>"##);
    if !o.title.is_empty() {
        let _ = writeln!(
            s,
            r##"<text x="{}" y="30" text-anchor="middle" font-size="18" font-weight="bold" fill="#222">{}</text>"##,
            w / 2.0,
            esc(&shorten(&o.title, 80))
        );
    }
    // Grid lines and y ticks.
    let mut v = amin;
    let mut guard = 0;
    while v <= amax + step * 1e-9 && guard < 50 {
        let y = y_of(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#444">{}</text>"##,
            left + pw,
            left - 8.0,
            y + 4.0,
            esc(&fmt_num(v))
        );
        v += step;
        guard += 1;
    }
    // Axes.
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{top}" x2="{left}" y2="{:.1}" stroke="#222"/><line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#222"/>"##,
        top + ph,
        y_of(amin.max(0.0).min(amax)),
        left + pw,
        y_of(amin.max(0.0).min(amax))
    );
    let slot = pw / pts.len() as f64;
    let label_every = (pts.len() / 40).max(1);
    for (i, p) in pts.iter().enumerate() {
        let cx = left + slot * (i as f64 + 0.5);
        match kind {
            Kind::Bar => {
                let base = y_of(0.0f64.clamp(amin, amax));
                let y = y_of(p.value);
                let (y0, bh) = if y < base {
                    (y, base - y)
                } else {
                    (base, y - base)
                };
                let bw = (slot * 0.7).max(1.0);
                let _ = writeln!(
                    s,
                    r##"<rect x="{:.1}" y="{y0:.1}" width="{bw:.1}" height="{bh:.1}" fill="{}"><title>{}: {}</title></rect>"##,
                    cx - bw / 2.0,
                    o.color,
                    esc(&p.label),
                    esc(&fmt_num(p.value))
                );
                if pts.len() <= 24 {
                    let _ = writeln!(
                        s,
                        r##"<text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-size="11" fill="#222">{}</text>"##,
                        y0 - 4.0,
                        esc(&fmt_num(p.value))
                    );
                }
            }
            Kind::Line => {
                let _ = writeln!(
                    s,
                    r##"<circle cx="{cx:.1}" cy="{:.1}" r="3" fill="{}"><title>{}: {}</title></circle>"##,
                    y_of(p.value),
                    o.color,
                    esc(&p.label),
                    esc(&fmt_num(p.value))
                );
            }
        }
        if i % label_every == 0 {
            let ly = top + ph + 16.0;
            let text = esc(&shorten(&p.label, 24));
            if many {
                let _ = writeln!(
                    s,
                    r##"<text x="{cx:.1}" y="{ly:.1}" text-anchor="end" fill="#444" transform="rotate(-45 {cx:.1} {ly:.1})">{text}</text>"##
                );
            } else {
                let _ = writeln!(
                    s,
                    r##"<text x="{cx:.1}" y="{ly:.1}" text-anchor="middle" fill="#444">{text}</text>"##
                );
            }
        }
    }
    if kind == Kind::Line {
        let path: Vec<String> = pts
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", left + slot * (i as f64 + 0.5), y_of(p.value)))
            .collect();
        let _ = writeln!(
            s,
            r##"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"##,
            path.join(" "),
            o.color
        );
    }
    if !o.x_label.is_empty() {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#222">{}</text>"##,
            left + pw / 2.0,
            h - 12.0,
            esc(&shorten(&o.x_label, 80))
        );
    }
    if !o.y_label.is_empty() {
        let (x, y) = (18.0, top + ph / 2.0);
        let _ = writeln!(
            s,
            r##"<text x="{x}" y="{y:.1}" text-anchor="middle" fill="#222" transform="rotate(-90 {x} {y:.1})">{}</text>"##,
            esc(&shorten(&o.y_label, 60))
        );
    }
    s.push_str("</svg>\n");
    s
}

async fn draw(kind: Kind, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
    let rel = path_param(&params, "output")?.to_owned();
    if !rel.to_ascii_lowercase().ends_with(".svg") {
        return Err(ActionError::invalid_parameters(format!(
            "`output` must name an .svg file, found `{rel}`"
        )));
    }
    let root = work_root(ctx)?;
    root.check(&rel)
        .map_err(|e| confined_error("cannot write", &rel, &e))?;
    let pts = points(params.get("data"))?;
    let opts = options(&params, kind)?;
    let svg = render(kind, &pts, &opts);
    let n = pts.len();
    let bytes = svg.len();
    blocking(move || {
        root.write_bytes(&rel, svg.as_bytes(), true)
            .map_err(|e| confined_error("cannot write", &rel, &e))?;
        Ok(json!({"path": rel, "points": n, "bytes": bytes}))
    })
    .await
}

/// `chart.bar {data, output, title, x_label, y_label, width = 800, height = 480, color}` →
/// `{path, points, bytes}`: writes a bar chart as SVG.
#[derive(Debug)]
pub struct Bar;

#[async_trait]
impl Action for Bar {
    fn spec(&self) -> Option<&'static orch_model::ActionSpec> {
        Some(&super::specs::BAR)
    }

    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        draw(Kind::Bar, params, ctx).await
    }
}

/// `chart.line {data, output, title, x_label, y_label, width = 800, height = 480, color}` →
/// `{path, points, bytes}`: writes a line chart as SVG.
#[derive(Debug)]
pub struct Line;

#[async_trait]
impl Action for Line {
    fn spec(&self) -> Option<&'static orch_model::ActionSpec> {
        Some(&super::specs::LINE)
    }

    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        draw(Kind::Line, params, ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        options(&json!({"title": "T <&>"}), Kind::Bar).expect("options")
    }

    #[test]
    fn every_data_shape_is_read() {
        let want = |pts: Vec<Point>| {
            pts.iter()
                .map(|p| (p.label.clone(), p.value))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            want(points(Some(&json!({"a": 1, "b": "2.5"}))).expect("object")),
            vec![("a".into(), 1.0), ("b".into(), 2.5)]
        );
        assert_eq!(
            want(points(Some(&json!([3, 4]))).expect("numbers")),
            vec![("1".into(), 3.0), ("2".into(), 4.0)]
        );
        assert_eq!(
            want(points(Some(&json!([["x", 1], [2020, 2]]))).expect("pairs")),
            vec![("x".into(), 1.0), ("2020".into(), 2.0)]
        );
        assert_eq!(
            want(
                points(Some(&json!([{"label": "q", "value": 7}, {"x": 1, "y": 2}])))
                    .expect("objects")
            ),
            vec![("q".into(), 7.0), ("1".into(), 2.0)]
        );
    }

    #[test]
    fn bad_data_is_refused_with_the_place() {
        let e = points(Some(&json!({"a": "many"}))).expect_err("not a number");
        assert!(e.message.contains("data.a"), "{}", e.message);
        let empty = points(Some(&json!({}))).expect("empty is drawn");
        assert!(render(Kind::Bar, &empty, &opts()).contains(">No data</text>"));
        assert!(points(None).is_err());
        assert!(points(Some(&json!({"a": "NaN"}))).is_err(), "not finite");
    }

    #[test]
    fn text_is_escaped_and_the_document_is_complete() {
        let pts = points(Some(&json!({"<script>": 3, "b&c": 5}))).expect("points");
        let svg = render(Kind::Bar, &pts, &opts());
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        assert!(!svg.contains("<script>"));
        assert!(
            svg.contains("&lt;script&gt;")
                && svg.contains("b&amp;c")
                && svg.contains("T &lt;&amp;&gt;")
        );
        assert_eq!(svg.matches("<rect x=").count(), 2, "one bar per point");
    }

    #[test]
    fn axes_are_nice() {
        assert_eq!(nice_axis(0.0, 87.0), (0.0, 100.0, 20.0));
        assert_eq!(nice_axis(0.0, 0.0), (0.0, 1.0, 0.2));
        let (lo, hi, step) = nice_axis(-3.0, 12.0);
        assert!(lo <= -3.0 && hi >= 12.0 && step > 0.0);
    }

    #[test]
    fn a_line_chart_has_a_polyline_through_every_point() {
        let pts = points(Some(&json!([1, 5, 2]))).expect("points");
        let svg = render(
            Kind::Line,
            &pts,
            &options(&json!({}), Kind::Line).expect("options"),
        );
        let line = svg
            .lines()
            .find(|l| l.starts_with("<polyline"))
            .expect("polyline");
        assert_eq!(line.matches(',').count(), 3);
    }

    #[test]
    fn colours_cannot_break_out_of_the_attribute() {
        assert!(options(&json!({"color": "red\" onload=\"x"}), Kind::Bar).is_err());
        assert!(options(&json!({"color": "#abc"}), Kind::Bar).is_ok());
        assert!(options(&json!({"width": 10}), Kind::Bar).is_err());
    }
}
