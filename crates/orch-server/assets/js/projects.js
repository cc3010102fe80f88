// Projects: the list with a summary and the templates, a form to create
// one; and a project's page with its milestones, its metrics (numbers
// charted) and its workflows, each of which can be run in the project.

import { api, seg } from "./api.js";
import { badge, errorBox, facts, fill, h, jsonBlock, s, table, time, title } from "./dom.js";

export function projectsPage() {
  return async (main) => {
    title("Projects");
    const [list, tpl] = await Promise.all([api("/projects"), api("/templates")]);
    const details = await Promise.all(
      list.projects.slice(0, 100).map((n) => api(`/projects/${seg(n)}`).then((r) => r.status, () => ({ name: n }))),
    );
    const sum = list.summary || {};
    const chips = (o) => Object.entries(o || {}).map(([k, v]) => h("span", { class: "chip" }, `${k}: ${v}`));
    fill(
      main,
      h("div", { class: "page-head" }, h("h1", {}, "Projects"), h("span", { class: "spacer" }), createForm(tpl.templates)),
      h(
        "div",
        { class: "card" },
        facts([
          ["Projects", String(sum.total_projects ?? list.projects.length)],
          ["By status", chips(sum.by_status)],
          ["By type", chips(sum.by_type)],
        ]),
        table(
          ["Project", "Status", "Type", "Workflows", "Milestones", "Updated"],
          details.length
            ? details.map((p) =>
                h(
                  "tr",
                  { "data-project": p.name },
                  h("td", {}, h("a", { href: `#/projects/${encodeURIComponent(p.name)}` }, p.name)),
                  h("td", {}, p.status ? badge(p.status) : ""),
                  h("td", {}, p.type || ""),
                  h("td", {}, p.workflows ?? ""),
                  h("td", {}, p.milestones ? String(Object.keys(p.milestones).length) : ""),
                  h("td", {}, p.updated_at ? time(p.updated_at) : ""),
                ),
              )
            : [h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No projects yet."))],
        ),
        list.load_problems && list.load_problems.length
          ? h("div", {}, h("h3", {}, "Projects that do not load"), h("ul", { class: "problems" }, list.load_problems.map((p) => h("li", {}, typeof p === "string" ? p : JSON.stringify(p)))))
          : null,
      ),
      h(
        "div",
        { class: "card" },
        h("h2", {}, "Templates"),
        table(
          ["Template", "Description", "Workflows"],
          tpl.templates.map((t) => h("tr", {}, h("td", {}, t.name), h("td", {}, t.description || ""), h("td", {}, (t.workflows || []).join(", ")))),
        ),
      ),
    );
  };
}

function createForm(templates) {
  const out = h("div");
  const form = h(
    "form",
    { id: "create-project" },
    h("label", {}, "Name ", h("input", { name: "name", required: true, pattern: "[A-Za-z0-9_.\\-]+" })),
    h(
      "label",
      {},
      "Template ",
      h("select", { name: "template" }, h("option", { value: "custom" }, "custom (empty)"), templates.map((t) => h("option", { value: t.name }, t.name))),
    ),
    h("label", {}, "Description ", h("input", { name: "description" })),
    h("button", { type: "submit", class: "primary" }, "Create"),
    out,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const fd = new FormData(form);
    try {
      const p = await api("/projects", {
        method: "POST",
        body: { name: fd.get("name"), template: fd.get("template"), description: fd.get("description") || "" },
      });
      location.hash = `#/projects/${encodeURIComponent(p.name)}`;
    } catch (err) {
      fill(out, errorBox(err));
    }
  });
  return h("details", { class: "start-box" }, h("summary", {}, "New project…"), form);
}

export function projectPage(name) {
  return async (main) => {
    title(`Project ${name}`);
    const base = `/projects/${seg(name)}`;
    const { status: st, project: p } = await api(base);
    const out = h("div", { class: "action-note" });
    const milestones = Object.entries(st.milestones || {});
    const metrics = Object.entries(st.metrics || {});
    const runWf = async (wf) => {
      try {
        const r = await api(`${base}/runs`, { method: "POST", body: { workflow: wf } });
        // A run skipped because its concurrency key's slots were held is not recorded.
        if (r.state === "skipped") fill(out, `Skipped (not recorded): ${r.note || "its concurrency key's slots were held"}.`);
        else location.hash = `#/runs/${r.run_id}`;
      } catch (e) {
        fill(out, errorBox(e));
      }
    };
    const again = () => window.dispatchEvent(new HashChangeEvent("hashchange"));
    fill(
      main,
      h("div", { class: "page-head" }, h("h1", {}, name, " ", badge(st.status))),
      out,
      h(
        "div",
        { class: "card" },
        p && p.description ? h("p", {}, p.description) : null,
        facts([
          ["Type", st.type],
          ["Template", (p && p.template) || "—"],
          ["Version", st.version],
          ["Path", h("code", {}, st.path)],
          p && p.author ? ["Author", p.author] : null,
          p && p.tags && p.tags.length ? ["Tags", p.tags.join(", ")] : null,
          ["Created", time(st.created_at)],
          ["Updated", time(st.updated_at)],
          ["Required modules", (st.required_modules || []).join(", ") || "—"],
        ]),
      ),
      h(
        "div",
        { class: "card", id: "workflows" },
        h("h2", {}, "Workflows"),
        table(
          ["Workflow", "", ""],
          ((p && p.workflows) || []).map((wf) =>
            h(
              "tr",
              {},
              h("td", {}, wf),
              h("td", {}, h("a", { href: `#/runs?workflow=${encodeURIComponent(wf)}` }, "runs")),
              h("td", {}, h("button", { type: "button", onclick: () => runWf(wf) }, "Run in project")),
            ),
          ),
        ),
      ),
      h(
        "div",
        { class: "card", id: "milestones" },
        h("h2", {}, "Milestones"),
        milestones.length
          ? table(
              ["Milestone", "Completed", "Data"],
              milestones.map(([k, v]) => {
                const { completed_at: at, ...rest } = v && typeof v === "object" ? v : { value: v };
                return h("tr", { "data-milestone": k }, h("td", {}, k), h("td", {}, time(at)), h("td", {}, Object.keys(rest).length ? jsonBlock(rest, "json small") : ""));
              }),
            )
          : h("p", { class: "muted" }, "No milestones yet."),
        jsonForm("Record a milestone", "key", "data (JSON, optional)", async (k, v) => {
          await api(`${base}/milestones`, { method: "POST", body: { key: k, data: v ?? {} } });
          again();
        }),
      ),
      h(
        "div",
        { class: "card", id: "metrics" },
        h("h2", {}, "Metrics"),
        metrics.length ? [metricChart(metrics), table(["Metric", "Value"], metrics.map(([k, v]) => h("tr", { "data-metric": k }, h("td", {}, k), h("td", {}, typeof v === "object" ? jsonBlock(v, "json small") : String(v)))))] : h("p", { class: "muted" }, "No metrics yet."),
        jsonForm("Set a metric", "name", "value (a number, or JSON)", async (k, v) => {
          await api(`${base}/metrics`, { method: "POST", body: { [k]: v } });
          again();
        }),
      ),
    );
  };
}

/** A key and a JSON value, posted by `send(key, value)`. */
function jsonForm(label, keyName, valueName, send) {
  const out = h("span", { class: "action-note" });
  const form = h(
    "form",
    { class: "inline" },
    h("input", { name: "key", placeholder: keyName, required: true }),
    h("input", { name: "value", placeholder: valueName }),
    h("button", { type: "submit" }, label),
    out,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const fd = new FormData(form);
    const raw = String(fd.get("value") || "").trim();
    let v;
    if (raw) {
      try {
        v = JSON.parse(raw);
      } catch {
        v = raw;
      }
    }
    try {
      await send(String(fd.get("key")), v);
    } catch (err) {
      fill(out, errorBox(err));
    }
  });
  return form;
}

/** Numeric metrics as horizontal bars. */
function metricChart(metrics) {
  const nums = metrics.filter(([, v]) => typeof v === "number" && isFinite(v));
  if (!nums.length) return null;
  const max = Math.max(...nums.map(([, v]) => Math.abs(v))) || 1;
  const W = 420;
  const ROW = 24;
  const svg = s("svg", { class: "metric-chart", width: W + 220, height: nums.length * ROW + 8 });
  nums.forEach(([k, v], i) => {
    const y = 4 + i * ROW;
    svg.append(
      s("text", { x: 0, y: y + 15 }, k.length > 22 ? `${k.slice(0, 21)}…` : k),
      s("rect", { x: 160, y: y + 3, width: Math.max(2, (W * Math.abs(v)) / max), height: ROW - 8, rx: 3, class: "metric-bar" }),
      s("text", { x: 166 + (W * Math.abs(v)) / max, y: y + 15, class: "muted" }, String(v)),
    );
  });
  return svg;
}
