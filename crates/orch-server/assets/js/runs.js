// The runs list: newest first, filtered by state and workflow, refreshed
// every two seconds while the tab is visible; and a form to start a run.

import { api } from "./api.js";
import { badge, between, duration, errorBox, fill, going, h, stateBar, table, time, title } from "./dom.js";

const RUN_STATES = ["queued", "running", "completed", "failed", "cancelled", "interrupted"];
const EVERY_MS = 2000;

export function runsPage(query) {
  return async (main) => {
    title("Runs");
    const status = query.get("status") || "";
    const workflow = query.get("workflow") || "";
    const names = (await api("/workflows")).workflows || [];

    const live = h("span", { class: "live", title: "refreshed every 2 s" }, "live");
    const filters = h(
      "form",
      { class: "filters", onsubmit: (e) => e.preventDefault() },
      h("label", {}, "State ", select("status", ["", ...RUN_STATES], status, "any")),
      h("label", {}, "Workflow ", select("workflow", ["", ...names], workflow, "any")),
      live,
    );
    filters.addEventListener("change", () => {
      const q = new URLSearchParams();
      const fd = new FormData(filters);
      for (const k of ["status", "workflow"]) if (fd.get(k)) q.set(k, fd.get(k));
      location.hash = `#/runs${q.toString() ? `?${q}` : ""}`;
    });

    const body = h("tbody");
    const list = h("div", { class: "card" });
    const note = h("p", { class: "muted small" });
    fill(
      main,
      h("div", { class: "page-head" }, h("h1", {}, "Runs"), startForm(names)),
      filters,
      list,
      note,
    );
    const tbl = table(["Run", "Workflow", "State", "Progress", "Created", "Took"], [], {
      class: "runs",
      id: "runs-table",
    });
    tbl.tBodies[0].replaceWith(body);
    list.append(tbl);

    const q = new URLSearchParams({ limit: "100" });
    if (status) q.set("status", status);
    if (workflow) q.set("workflow", workflow);
    let timer = null;
    let stopped = false;
    const refresh = async () => {
      if (stopped) return;
      try {
        const r = await api(`/runs?${q}`);
        fill(body, r.runs.length ? r.runs.map(row) : emptyRow());
        note.textContent = `${r.count} run(s) shown, newest first; updated ${new Date().toLocaleTimeString()}`;
        live.classList.remove("stale");
      } catch (e) {
        live.classList.add("stale");
        note.replaceChildren(errorBox(e));
      }
      if (!stopped) timer = setTimeout(tick, EVERY_MS);
    };
    const tick = () => (document.hidden ? (timer = setTimeout(tick, EVERY_MS)) : refresh());
    await refresh();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  };
}

function select(name, options, current, anyLabel) {
  return h(
    "select",
    { name },
    options.map((o) => h("option", { value: o, selected: o === current }, o || anyLabel)),
  );
}

function emptyRow() {
  return h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No runs yet. Start one above, or with `orch run`."));
}

function total(tasks) {
  return Object.values(tasks || {}).reduce((a, b) => a + (b || 0), 0);
}

function row(r) {
  const n = total(r.tasks);
  const done = (r.tasks.completed || 0) + (r.tasks.failed || 0) + (r.tasks.skipped || 0) + (r.tasks.cancelled || 0);
  const href = `#/runs/${r.id}`;
  return h(
    "tr",
    { "data-run-id": r.id, "data-state": r.state, class: "clickable", onclick: () => (location.hash = href) },
    h("td", {}, h("a", { href, class: "mono small" }, r.id)),
    h("td", {}, r.workflow),
    h("td", {}, badge(r.state), r.cancel_requested && going(r.state) ? h("span", { class: "muted small" }, " cancelling") : null),
    h("td", { class: "progress" }, stateBar(r.tasks, n), h("span", { class: "small muted" }, `${done}/${n}`)),
    h("td", {}, time(r.created_at)),
    h("td", {}, duration(between(r.created_at, r.finished_at))),
  );
}

/** "Start a run": a workflow by name, with parameters as JSON. */
function startForm(names) {
  const params = h("textarea", { name: "params", rows: 3, placeholder: '{"key": "value"}', spellcheck: "false" });
  const out = h("div");
  const form = h(
    "form",
    { class: "start", id: "start-run" },
    h("label", {}, "Workflow ", select("workflow", names, names[0] || "", "")),
    h("label", {}, "Parameters (JSON) ", params),
    h("button", { type: "submit", class: "primary" }, "Start run"),
    out,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const fd = new FormData(form);
    let p = {};
    const text = String(fd.get("params") || "").trim();
    if (text) {
      try {
        p = JSON.parse(text);
      } catch (err) {
        fill(out, errorBox(new Error(`the parameters are not JSON: ${err.message}`)));
        return;
      }
    }
    try {
      const r = await api("/runs", { method: "POST", body: { workflow: fd.get("workflow"), params: p } });
      location.hash = `#/runs/${r.run_id}`;
    } catch (err) {
      fill(out, errorBox(err));
    }
  });
  return h("details", { class: "start-box" }, h("summary", {}, "Start a run…"), form);
}
