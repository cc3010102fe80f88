// System: health by component with its issues, the engine's status
// (workflows, tasks, projects, performance, the store and what it can do),
// the workers when the store keeps records of them, the schedules (with
// pause, resume and trigger), resources and their use, and the sessions.
// Read again every five seconds.

import { api } from "./api.js";
import { duration, errorBox, facts, fill, h, table, time, title } from "./dom.js";

const EVERY_MS = 5000;

export function systemPage() {
  return async (main) => {
    title("System");
    let timer = null;
    let stopped = false;
    const draw = async () => {
      try {
        const [health, status, res, sessions, schedules] = await Promise.all([
          api("/health", { ok: [503] }),
          api("/status"),
          api("/resources"),
          api("/sessions"),
          // A store without records has no schedules: the card says why, the page stays.
          api("/schedules").catch((e) => ({ failed: e })),
        ]);
        fill(
          main,
          h("div", { class: "page-head" }, h("h1", {}, "System"), h("span", { class: "live", title: "read every 5 s" }, "live")),
          healthCard(health),
          statusCard(status),
          workersCard(status.workers),
          schedulesCard(schedules, () => {
            clearTimeout(timer);
            return draw();
          }),
          resourcesCard(res),
          sessionsCard(sessions.sessions || []),
        );
      } catch (e) {
        fill(main, h("h1", {}, "System"), errorBox(e));
      }
      if (!stopped) timer = setTimeout(() => (document.hidden ? (timer = setTimeout(draw, EVERY_MS)) : draw()), EVERY_MS);
    };
    await draw();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  };
}

function hbadge(st) {
  return h("span", { class: `badge hs-${st}` }, st);
}

function scalarFacts(obj) {
  return facts(
    Object.entries(obj || {}).map(([k, v]) => [
      k.replaceAll("_", " "),
      v && typeof v === "object" ? h("code", { class: "small" }, JSON.stringify(v)) : String(v),
    ]),
  );
}

/** A component's details; parts with a verdict of their own (a resource) as one line each. */
function componentFacts(details) {
  const parts = Object.entries(details).filter(([, v]) => v && typeof v === "object" && "healthy" in v);
  const rest = Object.fromEntries(Object.entries(details).filter(([k]) => !parts.some(([p]) => p === k)));
  return [
    scalarFacts(rest),
    parts.length
      ? facts(
          parts.map(([k, v]) => [
            k,
            [hbadge(v.healthy ? "healthy" : "degraded"), " ", v.status || "", v.users ? ` · ${v.users} user(s)` : ""],
          ]),
        )
      : null,
  ];
}

function healthCard(r) {
  return h(
    "section",
    { class: "card", id: "health-card" },
    h("h2", {}, "Health ", hbadge(r.overall_status)),
    h("p", { class: "muted small" }, "Checked ", time(r.timestamp)),
    (r.issues || []).length ? h("ul", { class: "problems" }, r.issues.map((i) => h("li", {}, i))) : h("p", { class: "ok" }, "No issues."),
    h(
      "div",
      { class: "grid" },
      Object.entries(r.components || {}).map(([name, c]) =>
        h(
          "div",
          { class: "component", "data-component": name },
          h("h3", {}, name.replaceAll("_", " "), " ", hbadge(c.status)),
          componentFacts(c.details || {}),
        ),
      ),
    ),
  );
}

function statusCard(st) {
  const perf = st.performance;
  const store = st.store || {};
  return h(
    "section",
    { class: "card", id: "status-card" },
    h("h2", {}, "Status"),
    h(
      "div",
      { class: "grid" },
      h("div", { class: "component" }, h("h3", {}, "Workflows"), scalarFacts(st.workflow_manager)),
      h("div", { class: "component" }, h("h3", {}, "Tasks"), scalarFacts(st.task_orchestrator)),
      h(
        "div",
        { class: "component" },
        h("h3", {}, "Projects"),
        facts([
          ["total", String(st.project_manager?.total_projects ?? 0)],
          ["templates", (st.project_manager?.templates || []).join(", ")],
        ]),
      ),
      h(
        "div",
        { class: "component" },
        h("h3", {}, "Store"),
        facts([
          ["backend", store.backend || "?"],
          ["url", h("code", { class: "small" }, store.url || "")],
          ["can", Object.entries(store.capabilities || {}).filter(([, v]) => v).map(([k]) => h("span", { class: "chip" }, k.replaceAll("_", " ")))],
        ]),
      ),
      perf
        ? h(
            "div",
            { class: "component" },
            h("h3", {}, "Since start"),
            facts([
              ["uptime", duration(perf.uptime_seconds)],
              ["runs", `${perf.workflows_executed} (${perf.workflows_succeeded} succeeded, ${perf.workflows_failed} failed, ${perf.workflows_running} running)`],
              ["steps", `${perf.tasks_completed} completed, ${perf.tasks_failed} failed, ${perf.tasks_retried} retried`],
              ["mean run", duration(perf.average_workflow_seconds)],
              ["sessions", `${perf.active_sessions} active of ${perf.sessions_created}`],
            ]),
          )
        : null,
    ),
  );
}

/** Workers, when the status lists them (a store that hands out claims to other processes). */
function workersCard(report) {
  if (!report) return null;
  const ws = report.workers || [];
  return h(
    "section",
    { class: "card", id: "workers-card" },
    h("h2", {}, "Workers ", report.status ? hbadge(report.status) : null),
    (report.issues || []).length ? h("ul", { class: "problems" }, report.issues.map((i) => h("li", {}, i))) : null,
    ws.length
      ? table(
          ["Worker", "Host", "State", "Slots in use", "Running", "Started", "Last seen"],
          ws.map((w) =>
            h(
              "tr",
              { "data-worker": w.id },
              h("td", { class: "mono" }, String(w.id)),
              h("td", {}, w.host || ""),
              h("td", {}, w.lost ? hbadge("unhealthy") : null, " ", w.lost ? "lost" : w.state || ""),
              h("td", {}, `${(w.running || []).length} / ${w.slots ?? "?"}`),
              h(
                "td",
                {},
                (w.running || []).slice(0, 8).map((t) =>
                  h("div", { class: "small" }, h("a", { href: `#/runs/${t.run}/steps/${encodeURIComponent(t.step)}` }, t.step), ` (attempt ${t.attempt})`),
                ),
                (w.running || []).length > 8 ? h("div", { class: "small muted" }, `and ${w.running.length - 8} more`) : null,
              ),
              h("td", {}, time(w.started_at)),
              h("td", {}, time(w.last_seen)),
            ),
          ),
        )
      : h("p", { class: "muted" }, "No worker has registered with this store."),
  );
}

/** A tick record in a few words: its time (a missed range's last), and how many missed. */
function tickWords(r) {
  if (!r) return "-";
  if (r.state === "missed") {
    const n = `${r.count ?? 1}${r.more ? "+" : ""}`;
    return [time(r.last || r.tick), ` (${n} missed)`];
  }
  return [time(r.tick), ` ${r.state}`];
}

/** The scheduled workflows, who fires them, and pause, resume, trigger. */
function schedulesCard(answer, redraw) {
  const head = h("h2", {}, "Schedules");
  if (answer.failed) return h("section", { class: "card", id: "schedules-card" }, head, errorBox(answer.failed));
  const list = answer.schedules || [];
  const out = h("div", { class: "schedule-out" });
  const act = async (name, what) => {
    try {
      const r = await api(`/schedules/${encodeURIComponent(name)}/${what}`, { method: "POST" });
      if (what === "trigger") {
        location.hash = `#/runs/${r.run_id}`;
        return;
      }
      await redraw();
    } catch (e) {
      fill(out, errorBox(e));
    }
  };
  const leader = answer.leader;
  return h(
    "section",
    { class: "card", id: "schedules-card" },
    head,
    h(
      "p",
      { class: "muted small" },
      leader ? ["Fired by ", h("code", {}, leader.holder), " (its lease runs to ", time(leader.until), ")"] : "No process holds the scheduler lease now (orch serve and orch worker fire schedules).",
    ),
    out,
    list.length
      ? table(
          ["Workflow", "Schedule", "Catch-up", "State", "Next tick", "Last fired", "Last missed", "Fired / missed / failed", ""],
          list.map((x) => {
            const st = x.state || {};
            const lf = x.last_fired;
            return h(
              "tr",
              { "data-schedule": x.workflow },
              h("td", {}, x.workflow),
              h("td", {}, h("code", { class: "small" }, x.schedule)),
              h("td", {}, x.catch_up),
              h("td", { class: "schedule-state" }, x.paused ? [h("span", { class: "badge hs-degraded" }, "paused"), h("div", { class: "small muted" }, `by ${x.paused.by}`)] : h("span", { class: "badge hs-healthy" }, "active")),
              h("td", {}, x.next ? time(x.next) : "-"),
              h("td", {}, lf ? [time(lf.tick), " ", h("a", { href: `#/runs/${lf.run}`, class: "mono small" }, String(lf.run).slice(0, 8))] : "-"),
              h("td", {}, tickWords(x.last_missed)),
              h("td", {}, `${st.fired ?? 0} / ${st.missed ?? 0} / ${st.failed ?? 0}`),
              h(
                "td",
                {},
                x.paused
                  ? h("button", { type: "button", class: "schedule-resume", onclick: () => act(x.workflow, "resume") }, "Resume")
                  : h("button", { type: "button", class: "schedule-pause", onclick: () => act(x.workflow, "pause") }, "Pause"),
                " ",
                h("button", { type: "button", class: "schedule-trigger", title: "Run now, with ${schedule.time} set to now", onclick: () => act(x.workflow, "trigger") }, "Run now"),
              ),
            );
          }),
        )
      : h("p", { class: "muted" }, "No workflow of the workflows directory has a schedule."),
  );
}

function resourcesCard(res) {
  const rows = (res.resources || []).map((r) => {
    const cap = r.capacity || {};
    const alloc = r.allocated || {};
    return h(
      "tr",
      { "data-resource": r.id },
      h("td", {}, r.name || r.id),
      h("td", {}, r.type),
      h("td", {}, hbadge2(r.status)),
      h(
        "td",
        {},
        Object.entries(cap).map(([k, c]) => {
          const used = alloc[k] || 0;
          const bar = h("div", { class: "meter", title: `${used} of ${c} ${k}` }, h("span"));
          bar.firstChild.style.width = `${c ? Math.min(100, (100 * used) / c) : 0}%`;
          return h("div", { class: "meter-row" }, h("span", { class: "small" }, `${k}: ${fmt(used)} / ${fmt(c)}`), bar);
        }),
      ),
      h("td", {}, String((r.current_users || []).length)),
    );
  });
  return h("section", { class: "card", id: "resources-card" }, h("h2", {}, "Resources"), table(["Resource", "Type", "State", "Allocated / capacity", "Users"], rows));
}

/** A resource's state, coloured as health: available and in use are fine. */
function hbadge2(status) {
  const tone = { available: "healthy", in_use: "healthy", reserved: "degraded", maintenance: "degraded" }[status] || "unhealthy";
  return h("span", { class: `badge hs-${tone}` }, status || "?");
}

function fmt(n) {
  return typeof n === "number" ? (Number.isInteger(n) ? String(n) : n.toFixed(2)) : String(n);
}

function sessionsCard(list) {
  return h(
    "section",
    { class: "card", id: "sessions-card" },
    h("h2", {}, "Sessions"),
    list.length
      ? table(
          ["Session", "User", "Mode", "State", "Created"],
          list.map((x) =>
            h(
              "tr",
              {},
              h("td", { class: "mono small" }, String(x.session_id || x.id || "")),
              h("td", {}, x.user_id || ""),
              h("td", {}, x.mode || ""),
              h("td", {}, x.status || (x.active === false ? "closed" : "open")),
              h("td", {}, time(x.created_at)),
            ),
          ),
        )
      : h("p", { class: "muted" }, "No sessions."),
  );
}
