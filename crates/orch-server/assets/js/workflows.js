// Workflow definitions: the list (with the files that do not load and
// their problems), and one definition in an editor that validates it
// against the server and marks every problem at its line and column; it
// can be saved and run from there.

import { api, seg } from "./api.js";
import { aggregateGraph, FULL_LIMIT, fullGraph } from "./dag.js";
import { errorBox, fill, h, table, title } from "./dom.js";
import { RunModel } from "./model.js";
import { toYaml } from "./yaml.js";

export function workflowsPage() {
  return async (main) => {
    title("Workflows");
    const r = await api("/workflows");
    const rows = r.workflows.map((name) =>
      h(
        "tr",
        { "data-workflow": name },
        h("td", {}, h("a", { href: `#/workflows/${encodeURIComponent(name)}` }, name)),
        h("td", {}, h("a", { href: `#/runs?workflow=${encodeURIComponent(name)}` }, "runs")),
      ),
    );
    fill(
      main,
      h(
        "div",
        { class: "page-head" },
        h("h1", {}, "Workflows"),
        h("span", { class: "spacer" }),
        h("a", { class: "button", href: "#/validate" }, "Validate a new definition"),
      ),
      h("div", { class: "card" }, table(["Workflow", ""], rows.length ? rows : [h("tr", {}, h("td", { colspan: 2, class: "muted" }, "No workflows in workflows_dir."))])),
      r.load_problems.length
        ? h(
            "div",
            { class: "card", id: "load-problems" },
            h("h2", {}, "Definitions that do not load"),
            h("p", { class: "muted small" }, "Files in workflows_dir that were left out, each problem with its file, line and column."),
            h("ul", { class: "problems" }, r.load_problems.map((p) => h("li", {}, loadProblem(p)))),
          )
        : null,
    );
  };
}

/** `FILE:LINE:COLUMN: PATH: MESSAGE` with the position picked out. */
function loadProblem(text) {
  const m = /^(.*?):(\d+):(\d+): (.*)$/.exec(text);
  if (!m) return text;
  return [h("code", {}, m[1]), " ", h("span", { class: "pos" }, `line ${m[2]}, column ${m[3]}`), ": ", m[4]];
}

const NEW = `name: example
description: Two steps, the second after the first
steps:
  - name: hello
    module: shell
    action: exec
    parameters: { program: echo, args: [hello] }
  - name: wait
    module: core
    action: sleep
    parameters: { ms: 500 }
    dependencies: [hello]
`;

export function workflowPage(name) {
  return async (main) => {
    const isNew = name === null;
    title(isNew ? "New definition" : `Workflow ${name}`);
    let text = NEW;
    let levels = null;
    if (!isNew) {
      const wf = await api(`/workflows/${seg(name)}`);
      text = toYaml(wf.definition);
      levels = wf;
    }
    const editor = codeEditor(text);
    const problems = h("div", { id: "problems" });
    const out = h("div", { class: "action-note" });
    const graphBox = h("div", { id: "workflow-graph" });
    const validate = async () => {
      out.replaceChildren();
      try {
        const r = await api("/validate", { method: "POST", body: { definition: editor.value(), format: "yaml" } });
        showProblems(r, editor, problems);
        // Unchanged, the saved definition keeps its graph with its edges.
        if (r.valid && (isNew || editor.value() !== text)) drawGraph(graphBox, editor.value(), r);
        return r;
      } catch (e) {
        fill(problems, errorBox(e));
        return null;
      }
    };
    const save = async () => {
      const r = await validate();
      if (!r || !r.valid) return;
      try {
        const saved = await api(`/workflows/${seg(r.name)}`, { method: "PUT", body: { definition: editor.value(), format: "yaml" } });
        fill(out, `Saved as ${saved.path || r.name}.`);
        if (isNew || r.name !== name) location.hash = `#/workflows/${encodeURIComponent(r.name)}`;
      } catch (e) {
        fill(out, errorBox(e));
      }
    };
    const run = async () => {
      try {
        const r = await api("/runs", { method: "POST", body: { workflow: name } });
        // A run skipped because its concurrency key's slots were held is not recorded.
        if (r.state === "skipped") fill(out, `Skipped (not recorded): ${r.note || "its concurrency key's slots were held"}.`);
        else location.hash = `#/runs/${r.run_id}`;
      } catch (e) {
        fill(out, errorBox(e));
      }
    };
    fill(
      main,
      h(
        "div",
        { class: "page-head" },
        h("h1", {}, isNew ? "New definition" : name),
        h("span", { class: "spacer" }),
        h(
          "div",
          { class: "actions" },
          h("button", { type: "button", id: "validate", onclick: validate }, "Validate"),
          h("button", { type: "button", id: "save", onclick: save }, "Save"),
          isNew ? null : h("button", { type: "button", class: "primary", id: "run-workflow", onclick: run }, "Run"),
        ),
      ),
      out,
      h(
        "div",
        { class: "card" },
        h("p", { class: "muted small" }, isNew
          ? "Write or paste a definition (YAML, or JSON) and validate it: every problem is marked at its line."
          : "The definition as the server reads it, written as YAML. Edit it and validate: every problem is marked at its line; Save replaces the workflow."),
        editor.el,
        problems,
      ),
      h("div", { class: "card" }, h("h2", {}, "Graph"), graphBox),
    );
    if (levels) drawGraph(graphBox, text, { levels: levels.levels }, levels.definition);
    else validate();
  };
}

/**
 * The definition's graph, every step pending: with its edges from a saved
 * definition, by levels only from a validation's answer.
 */
function drawGraph(box, _text, r, definition) {
  const names = (r.levels || []).flat();
  const def = definition || null;
  const steps = def ? def.steps.map((st, i) => ({ index: i, name: st.name, status: "pending" })) : names.map((n, i) => ({ index: i, name: n, status: "pending" }));
  const model = new RunModel({ created_at: null }, steps, def ? { workflow: def } : null);
  if (!def) {
    // From /validate: levels only; the layout follows them.
    const lvl = new Map();
    (r.levels || []).forEach((names2, k) => names2.forEach((n) => lvl.set(n, k)));
    model.levels = steps.map((st) => lvl.get(st.name) ?? 0);
  }
  const g = model.size > FULL_LIMIT ? aggregateGraph(model, () => {}) : fullGraph(model, () => {});
  const note = `${model.size} step(s) in ${(r.levels || []).length} level(s)${def ? "" : "; dependencies are drawn once the definition is saved"}.`;
  fill(box, h("p", { class: "muted small" }, note), g.el);
  if (model.size > 12) g.fit();
}

/** Every problem listed, and marked in the editor's gutter at its line. */
function showProblems(r, editor, box) {
  editor.mark(r.problems || []);
  if (r.valid) {
    fill(box, h("p", { class: "ok", id: "valid" }, `Valid: ${r.steps} step(s) in ${r.levels.length} level(s).`));
    return;
  }
  fill(
    box,
    h("p", { class: "error" }, `${r.problems.length} problem(s):`),
    h(
      "ul",
      { class: "problems" },
      r.problems.map((p) =>
        h(
          "li",
          { "data-line": p.pos ? p.pos.line : "", onclick: () => p.pos && editor.goto(p.pos.line, p.pos.column) },
          p.pos ? h("span", { class: "pos" }, `line ${p.pos.line}, column ${p.pos.column}`) : null,
          p.path ? [" ", h("code", {}, p.path)] : null,
          ` ${p.message}`,
          p.kind ? h("span", { class: "muted small" }, ` (${p.kind})`) : null,
        ),
      ),
    ),
  );
}

/** A textarea with line numbers; problems are marked in the gutter. */
function codeEditor(text) {
  const area = h("textarea", { class: "code", spellcheck: "false", wrap: "off", id: "definition", "aria-label": "definition" });
  area.value = text;
  const gutter = h("div", { class: "gutter", "aria-hidden": "true" });
  let marks = new Map();
  const lines = () => {
    const n = area.value.split("\n").length;
    const rows = [];
    for (let i = 1; i <= n; i++) {
      const msgs = marks.get(i);
      rows.push(h("div", msgs ? { class: "bad", title: msgs.join("\n"), "data-line": i } : { "data-line": i }, String(i)));
    }
    gutter.replaceChildren(...rows);
    gutter.scrollTop = area.scrollTop;
  };
  area.addEventListener("input", lines);
  const editor = h("div", { class: "editor" }, gutter, area);
  // As tall as the text, within limits.
  editor.style.height = `${Math.min(560, Math.max(200, text.split("\n").length * 18 + 16))}px`;
  area.addEventListener("scroll", () => (gutter.scrollTop = area.scrollTop));
  lines();
  return {
    el: editor,
    value: () => area.value,
    mark(problems) {
      marks = new Map();
      for (const p of problems) {
        if (!p.pos) continue;
        const l = p.pos.line;
        if (!marks.has(l)) marks.set(l, []);
        marks.get(l).push(`${p.pos.column}: ${p.message}`);
      }
      lines();
    },
    goto(line, column) {
      const all = area.value.split("\n");
      let off = 0;
      for (let i = 0; i < line - 1 && i < all.length; i++) off += all[i].length + 1;
      off += Math.max(0, (column || 1) - 1);
      area.focus();
      area.setSelectionRange(off, Math.min(area.value.length, off + 1));
      const lh = parseFloat(getComputedStyle(area).lineHeight) || 18;
      area.scrollTop = Math.max(0, (line - 5) * lh);
    },
  };
}
