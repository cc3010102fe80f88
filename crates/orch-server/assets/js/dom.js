// Small DOM helpers: elements built from data (never HTML strings, so names
// and outputs from the server are always text), formatting of times, and
// the colours of states.

const SVG_NS = "http://www.w3.org/2000/svg";

function put(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.setAttribute("class", v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "text") el.textContent = v;
    else if (k === "value" && "value" in el) el.value = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** An HTML element: `h("a", {href: "#/runs"}, "Runs")`. */
export function h(tag, attrs, ...children) {
  return put(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return put(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  return put(el, {}, children);
}

/** States of steps and runs, in the order they are listed. */
export const STATES = [
  "pending",
  "ready",
  "running",
  "completed",
  "failed",
  "cancelled",
  "skipped",
  "interrupted",
];

/**
 * Whether a run goes on: running, or queued (submitted to workers and
 * waiting for a slot of its concurrency key; its events follow as it runs).
 */
export function going(state) {
  return state === "running" || state === "queued";
}

/** A state's badge (coloured by the stylesheet's `.st-STATE`). */
export function badge(state) {
  return h("span", { class: `badge st-${state || "unknown"}`, "data-state": state }, state || "?");
}

/** A run id's first 13 characters: the millisecond it was made (a UUIDv7
 * begins with its time; the first 8 alone are the same for a minute). */
export function shortId(id) {
  return id ? String(id).slice(0, 13) : "";
}

/** A time as the browser's local time, with the ISO time as a tooltip. */
export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const d = new Date(iso);
  return h("time", { datetime: iso, title: iso }, d.toLocaleString());
}

/** Seconds as "850 ms", "12.3 s", "4 m 05 s", "2 h 03 m". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} m ${String(Math.floor(seconds % 60)).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} m`;
}

/** The seconds between two ISO times (to now when `b` is missing). */
export function between(a, b) {
  if (!a) return null;
  return ((b ? Date.parse(b) : Date.now()) - Date.parse(a)) / 1000;
}

/** A value as indented JSON in a <pre>. */
export function jsonBlock(v, cls = "json") {
  return h("pre", { class: cls }, JSON.stringify(v, null, 2));
}

/** A message for an error from the API or the network. */
export function errorBox(e) {
  const body = e && e.body;
  return h(
    "div",
    { class: "error-box", role: "alert" },
    h("strong", {}, e && e.status ? `Error ${e.status}: ` : "Error: "),
    (body && body.error) || String((e && e.message) || e),
    body && body.suggestions && body.suggestions.length
      ? h("ul", {}, body.suggestions.map((x) => h("li", {}, x)))
      : null,
  );
}

/** A definition list from pairs. */
export function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
  );
}

/** A table from column titles and rows of cells. */
export function table(titles, rows, attrs = {}) {
  return h(
    "table",
    attrs,
    h("thead", {}, h("tr", {}, titles.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows),
  );
}

/** A horizontal bar split by state counts (`{completed: 3, failed: 1}`). */
export function stateBar(counts, total) {
  const sum = total || Object.values(counts || {}).reduce((a, b) => a + (b || 0), 0);
  const bar = h("div", { class: "statebar", title: describeCounts(counts) });
  if (!sum) return bar;
  for (const st of STATES) {
    const n = (counts || {})[st];
    if (!n) continue;
    const part = h("span", { class: `st-${st}` });
    part.style.width = `${(100 * n) / sum}%`;
    bar.append(part);
  }
  return bar;
}

export function describeCounts(counts) {
  return STATES.filter((st) => (counts || {})[st])
    .map((st) => `${counts[st]} ${st}`)
    .join(", ");
}

/** Sets the document title. */
export function title(text) {
  document.title = text ? `${text} · orch` : "orch";
}
