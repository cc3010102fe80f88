// The run page: the run's state and buttons (cancel, retry and retry from a
// step where the server offers it, resume), its graph coloured by state, the timeline of its
// attempts, its steps, and one step's output and result. A running run is
// followed live over its event stream.

import { api, offered, stream } from "./api.js";
import { aggregateGraph, FULL_LIMIT, fullGraph } from "./dag.js";
import { badge, between, duration, errorBox, facts, fill, going, h, shortId, stateBar, STATES, time, title } from "./dom.js";
import { timeline } from "./gantt.js";
import { RunModel } from "./model.js";
import { stepPanel } from "./step.js";
import { VirtualList } from "./vlist.js";

/** The most steps the page loads; a larger run shows its counts only. */
const MAX_STEPS = 100000;

export function runPage(id, stepName) {
  return async (main) => {
    title(`Run ${shortId(id)}`);
    fill(main, h("p", { class: "muted" }, "Loading the run…"));
    const [run, routes] = await Promise.all([api(`/runs/${id}?definition=true`), offered()]);
    if (run.state === "waiting") return waitingPage(main, id, run.waiting || {});
    const runId = run.id;
    const total = Object.values(run.tasks || {}).reduce((a, b) => a + b, 0);
    const stops = [];
    const stopAll = () => stops.forEach((f) => f());

    const head = h("div", { class: "page-head" });
    const summary = h("div", { class: "card summary" });
    const body = h("div", { class: "run-body" });
    fill(main, head, summary, body);

    const view = { run, model: null, live: null };
    const drawHead = () => {
      const r = view.run;
      title(`${r.workflow} ${shortId(r.id)}`);
      const counts = view.model ? view.model.counts() : r.tasks;
      fill(
        head,
        h("h1", {}, h("a", { href: `#/runs?workflow=${encodeURIComponent(r.workflow)}` }, r.workflow), " ", badge(r.state)),
        h("span", { class: "mono muted", title: "run id" }, r.id),
        view.live && going(r.state) ? view.live : null,
        h("span", { class: "spacer" }),
        actions(r, routes, reload, () => main.isConnected),
      );
      fill(
        summary,
        stateBar(counts),
        facts([
          ["Steps", STATES.filter((st) => counts[st]).map((st) => h("span", { class: "count-chip" }, badge(st), ` ${counts[st]}`))],
          ["Created", time(r.created_at)],
          ["Finished", time(r.finished_at)],
          ["Took", duration(between(r.created_at, r.finished_at))],
          Object.keys(r.params || {}).length ? ["Parameters", h("code", {}, JSON.stringify(r.params))] : null,
          r.owner ? ["Owner", h("span", { class: "mono" }, r.owner)] : null,
          r.parent ? ["Parent run", h("a", { href: `#/runs/${r.parent}`, class: "mono" }, r.parent)] : null,
          r.cancel_requested && going(r.state) ? ["Cancel", "requested; running steps are being stopped"] : null,
        ]),
      );
    };
    function reload() {
      const target = `#/runs/${runId}`;
      if (location.hash === target) window.dispatchEvent(new HashChangeEvent("hashchange"));
      else location.hash = target;
    }
    drawHead();

    if (total > MAX_STEPS) {
      fill(body, h("p", { class: "muted" }, `This run has ${total} steps, more than the ${MAX_STEPS} the dashboard loads; it shows their counts only. GET /runs/${runId}/steps pages through them.`));
      return stopAll;
    }

    const stepsResp = await api(`/runs/${runId}/steps?limit=${MAX_STEPS}`);
    const model = new RunModel(run, stepsResp.steps, run.definition);
    view.model = model;

    // The stored events so far: attempts for the timeline, and the cursor
    // the live stream continues from.
    let after = 0;
    for (;;) {
      const evs = await api(`/runs/${runId}/events?after=${after}&limit=100000`);
      for (const ev of evs.events) model.apply(ev);
      after = evs.next;
      if (!evs.more) break;
    }
    // The stored states are read after the events: they win.
    model.update((await api(`/runs/${runId}/steps?limit=${MAX_STEPS}`)).steps);

    let selected = null;
    const panelBox = h("aside", { class: "card step-panel", id: "step-panel", hidden: true });
    const select = (i) => {
      selected = i;
      graph.select(i);
      gantt.show(i);
      table.show(i);
      const st = model.steps[i];
      if (main.isConnected) history.replaceState(null, "", `#/runs/${runId}/steps/${encodeURIComponent(st.name)}`);
      panelBox.hidden = false;
      panel.show(st);
    };
    // "Retry from here": a new run that runs this step again, and what
    // depends on it, keeping the other completed steps.
    const retryFrom = (st) =>
      canRetry(view.run, routes) && st.status !== "pending"
        ? h(
            "button",
            {
              type: "button",
              id: "retry-from",
              onclick: async (e) => {
                e.target.disabled = true;
                try {
                  const r = await api(`/runs/${runId}/retry?from=${encodeURIComponent(st.name)}`, { method: "POST" });
                  if (main.isConnected) location.hash = `#/runs/${r.run_id}`;
                } catch (err) {
                  e.target.replaceWith(errorBox(err));
                }
              },
            },
            "Retry from this step",
          )
        : null;
    const panel = stepPanel(runId, routes, panelBox, retryFrom, () => {
      panel.stop();
      selected = null;
      panelBox.hidden = true;
      graph.select(-1);
      if (main.isConnected) history.replaceState(null, "", `#/runs/${runId}`);
    });

    stops.push(() => panel.stop());
    const big = model.size > FULL_LIMIT;
    const table = stepsTable(model, select);
    const graph = big
      ? aggregateGraph(model, (from, to, st) => table.filter({ from, to, state: st }))
      : fullGraph(model, select);
    const gantt = timeline(model, select);
    fill(
      body,
      h(
        "div",
        { class: "run-main" },
        h("section", { class: "card", id: "graph" }, h("h2", {}, "Graph"), legend(), graph.el),
        h("section", { class: "card", id: "timeline" }, h("h2", {}, "Timeline of attempts"), gantt.el),
        h("section", { class: "card", id: "steps" }, h("h2", {}, "Steps"), table.el),
      ),
      panelBox,
    );
    gantt.update();
    table.update();
    if (!big && model.size > 12) graph.fit();
    drawHead();
    if (stepName !== undefined && model.byName.has(stepName)) select(model.byName.get(stepName));

    // Live: events move steps; redraws are gathered, at most 4 a second.
    let dirty = new Set();
    let pending = null;
    const redraw = () => {
      pending = null;
      const changed = [...dirty];
      dirty = new Set();
      graph.update(changed);
      table.update();
      gantt.update();
      drawHead();
      if (selected !== null && changed.includes(selected)) panel.show(model.steps[selected]);
    };
    const later = () => {
      if (!pending) pending = setTimeout(redraw, 250);
    };
    stops.push(() => clearTimeout(pending));

    if (going(view.run.state)) {
      view.live = h("span", { class: "live", title: "following the run's event stream" }, "live");
      drawHead();
      let tick = null;
      const stop = stream(`/runs/${runId}/events/stream?after=${after}`, async (ev) => {
        if (ev.event === "end") {
          view.run = ev.data;
          model.update((await api(`/runs/${runId}/steps?limit=${MAX_STEPS}`)).steps).forEach((i) => dirty.add(i));
          for (let i = 0; i < model.size; i++) dirty.add(i);
          redraw();
          clearInterval(tick);
          return;
        }
        if (ev.event === "error") return;
        for (const i of model.apply(ev.data)) dirty.add(i);
        later();
      }, {
        onState: (st) => view.live.classList.toggle("stale", Boolean(st.error || st.reconnecting)),
      });
      stops.push(stop);
      // Bars of running attempts grow; the run itself is read again now and
      // then (a cancel asked by another client shows).
      let n = 0;
      tick = setInterval(async () => {
        if (document.hidden) return;
        gantt.update();
        table.update();
        drawHead();
        if (++n % 5 === 0) {
          try {
            const r = await api(`/runs/${runId}`);
            if (going(view.run.state)) view.run = r;
            drawHead();
          } catch {
            // The stream reports trouble; the next turn tries again.
          }
        }
      }, 1000);
      stops.push(() => clearInterval(tick));
    }
    return stopAll;
  };
}

function legend() {
  return h(
    "div",
    { class: "legend" },
    ["pending", "ready", "running", "completed", "failed", "cancelled", "skipped"].map((st) =>
      h("span", { class: "legend-item" }, h("span", { class: `swatch st-${st}` }), st),
    ),
  );
}

/** Whether the server retries runs, and this one can be: it failed or was cancelled. */
export function canRetry(run, routes) {
  return ["failed", "cancelled"].includes(run.state) && routes.has("POST /runs/{id}/retry");
}

/**
 * Cancel (running), retry (when the server has the route) and resume
 * (interrupted). `shown` says whether the run's page is still the one on
 * screen: an answer that comes after the user went elsewhere (a cancel waits
 * up to ten seconds for the run to end) must not take them back.
 */
function actions(run, routes, reload, shown) {
  const box = h("div", { class: "actions", id: "run-actions" });
  const out = h("span", { class: "action-note" });
  const post = async (path, label) => {
    out.textContent = `${label}…`;
    try {
      const r = await api(path, { method: "POST" });
      if (!shown()) return;
      const next = r && r.run_id && r.run_id !== run.id ? r.run_id : null;
      if (next) location.hash = `#/runs/${next}`;
      else reload();
    } catch (e) {
      out.replaceChildren(errorBox(e));
    }
  };
  if (going(run.state) && routes.has("POST /runs/{id}/cancel")) {
    // Two clicks: the first arms the button for five seconds.
    let armed = null;
    const b = h("button", { type: "button", class: "danger", id: "cancel-run" }, run.cancel_requested ? "Cancel again" : "Cancel run");
    b.addEventListener("click", () => {
      if (!armed) {
        b.textContent = "Click again to cancel";
        armed = setTimeout(() => {
          armed = null;
          b.textContent = "Cancel run";
        }, 5000);
        return;
      }
      clearTimeout(armed);
      b.disabled = true;
      post(`/runs/${run.id}/cancel?wait=10`, "Cancelling");
    });
    box.append(b);
  }
  if (canRetry(run, routes)) {
    box.append(
      h("button", { type: "button", id: "retry-run", title: "A new run that keeps the completed steps", onclick: () => post(`/runs/${run.id}/retry`, "Retrying") }, "Retry"),
    );
  }
  if (run.state === "interrupted" && routes.has("POST /runs/{id}/resume")) {
    box.append(h("button", { type: "button", id: "resume-run", onclick: () => post(`/runs/${run.id}/resume`, "Resuming") }, "Resume"));
  }
  box.append(out);
  return box;
}

/** The steps as a virtualised table, filtered by state, name and level. */
function stepsTable(model, onSelect) {
  let rows = [];
  let want = { state: "", text: "", from: null, to: null };
  const stateSel = h("select", { name: "state" }, h("option", { value: "" }, "any state"), STATES.map((st) => h("option", { value: st }, st)));
  const search = h("input", { type: "search", name: "q", placeholder: "step name contains…" });
  const levelNote = h("span", { class: "small muted" });
  const clear = h("button", { type: "button", class: "link", hidden: true }, "all levels");
  const list = new VirtualList({
    rowHeight: 28,
    height: 420,
    className: "steps-rows",
    render: (k) => {
      const i = rows[k];
      const st = model.steps[i];
      return h(
        "div",
        { class: "step-row", "data-step": st.name, "data-state": st.status, onclick: () => onSelect(i) },
        h("span", { class: "c-idx muted" }, String(i)),
        h("span", { class: "c-name" }, st.name),
        h("span", { class: "c-state" }, badge(st.status)),
        h("span", { class: "c-lvl muted" }, `L${model.levels[i]}`),
        h("span", { class: "c-att" }, st.attempt ? `${st.attempt}` : ""),
        h("span", { class: "c-took" }, st.started_at ? duration(between(st.started_at, st.finished_at)) : ""),
        h("span", { class: "c-note muted" }, st.note || (st.result && st.result.error_message) || ""),
      );
    },
  });
  const update = () => {
    rows = [];
    const text = want.text.toLowerCase();
    for (let i = 0; i < model.size; i++) {
      const st = model.steps[i];
      if (want.state && st.status !== want.state) continue;
      if (text && !st.name.toLowerCase().includes(text)) continue;
      if (want.from !== null && (model.levels[i] < want.from || model.levels[i] > want.to)) continue;
      rows.push(i);
    }
    list.setCount(rows.length);
    clear.hidden = want.from === null;
    levelNote.textContent = `${rows.length} of ${model.size}${want.from === null ? "" : want.from === want.to ? ` · level ${want.from}` : ` · levels ${want.from}–${want.to}`}`;
  };
  stateSel.addEventListener("change", () => ((want.state = stateSel.value), update()));
  search.addEventListener("input", () => ((want.text = search.value), update()));
  clear.addEventListener("click", () => ((want.from = want.to = null), update()));
  const el = h(
    "div",
    {},
    h("div", { class: "filters" }, stateSel, search, levelNote, clear),
    h(
      "div",
      { class: "step-row step-head" },
      ["#", "step", "state", "level", "attempts", "took", "note"].map((t, k) => h("span", { class: ["c-idx", "c-name", "c-state", "c-lvl", "c-att", "c-took", "c-note"][k] }, t)),
    ),
    list.el,
  );
  return {
    el,
    update,
    show: (i) => {
      const k = rows.indexOf(i);
      if (k >= 0) list.show(k);
    },
    filter: ({ from, to, state }) => {
      want = { ...want, from, to, state };
      stateSel.value = state;
      update();
      el.scrollIntoView({ block: "start" });
    },
  };
}

/** A run started by this server that waits for a slot of its concurrency
 * key: not recorded yet; the page looks again every second. */
function waitingPage(main, id, w) {
  title(`Run ${shortId(id)}`);
  // Whole ids: runs made within a minute share their first characters.
  const holders = (w.holders || []).flatMap((x, i) => [i ? ", " : "", h("a", { href: `#/runs/${x}`, class: "mono" }, x)]);
  fill(
    main,
    h("div", { class: "page-head" }, h("h1", {}, "Run ", badge("waiting")), h("span", { class: "mono muted", title: "run id" }, id)),
    h(
      "p",
      {},
      "Waits for a slot of the concurrency key ",
      h("code", {}, w.key || "?"),
      ` (limit ${w.limit ?? "?"}), held by `,
      ...holders,
      "; it starts when one of them ends.",
    ),
  );
  const again = setTimeout(() => {
    if (main.isConnected && location.hash.startsWith(`#/runs/${id}`)) window.dispatchEvent(new HashChangeEvent("hashchange"));
  }, 1000);
  return () => clearTimeout(again);
}
