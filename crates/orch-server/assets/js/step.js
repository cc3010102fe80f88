// One step of a run, beside its graph: its state, attempts and times, what
// it printed (stdout, stderr, exit code) and its result. While the step
// runs, its output is followed live when the server offers a stream of it.

import { api, seg, stream } from "./api.js";
import { badge, between, duration, errorBox, facts, fill, h, jsonBlock, time } from "./dom.js";
import { isTerminal } from "./model.js";

/** The route of a running step's output stream, if the server has it. */
function outputRoute(routes) {
  const path = "/runs/{id}/steps/{step}/logs/stream";
  return routes.has(`GET ${path}`) ? path : null;
}

/**
 * The items of a fan-out step over a list known at run time (they run as a
 * run of their own, `step.items_run`): each one's name, linking to it there,
 * and its state.
 */
function itemsList(step) {
  if (!step.items.length) return h("p", { class: "muted" }, "No item: the list was empty.");
  return h(
    "ul",
    { class: "items" },
    ...step.items.map((it) =>
      h(
        "li",
        {},
        h("a", { href: `#/runs/${step.items_run}/steps/${encodeURIComponent(it.name)}` }, it.name),
        " ",
        badge(it.status),
        it.result && it.result.error_message ? h("span", { class: "error small" }, ` ${it.result.error_message}`) : null,
      ),
    ),
  );
}

/**
 * The panel of one step, drawn into `box`; `extra(step)` may add a button
 * under its facts; `onClose` is called by its close button.
 */
export function stepPanel(runId, routes, box, extra, onClose) {
  let current = 0;
  let stopStream = null;
  const liveRoute = outputRoute(routes);

  async function show(st) {
    const me = ++current;
    stopStream?.();
    stopStream = null;
    const name = st.name;
    const base = `/runs/${runId}/steps/${seg(name)}`;
    const close = h("button", { type: "button", class: "link close", title: "Close", onclick: onClose }, "×");
    fill(box, h("div", { class: "panel-head" }, h("h2", {}, name), badge(st.status), close), h("p", { class: "muted" }, "Loading…"));
    let step;
    let logs = null;
    try {
      [step, logs] = await Promise.all([api(base), api(`${base}/logs`)]);
    } catch (e) {
      if (me === current) fill(box, h("div", { class: "panel-head" }, h("h2", {}, name), close), errorBox(e));
      return;
    }
    if (me !== current) return;
    const r = step.result;
    const out = h("pre", { class: "log", id: "step-stdout" }, logs.stdout ?? "");
    const err = h("pre", { class: "log err", id: "step-stderr" }, logs.stderr ?? "");
    const ended = isTerminal(step.status);
    let outputNote = null;
    if (!ended && liveRoute) {
      // The output so far came with the logs; the stream goes on after it.
      outputNote = h("p", { class: "small muted live-note" }, "Following the step's output as it is produced…");
      let attempt = logs.attempt;
      const path = liveRoute.replace("{id}", seg(runId)).replace("{step}", seg(name));
      stopStream = stream(`${path}?after=${logs.next ?? 0}`, (ev) => {
        if (me !== current) return;
        if (ev.event === "end") {
          // The step ended: its record, result and whole output, read again.
          show({ ...st, status: (ev.data && ev.data.status) || st.status });
          return;
        }
        if (ev.event !== "stdout" && ev.event !== "stderr") return;
        const d = ev.data || {};
        if (typeof d.text !== "string") return;
        const pre = ev.event === "stderr" ? err : out;
        if (d.attempt && attempt && d.attempt !== attempt) {
          // A retry: its output follows a mark.
          out.append(`\n--- attempt ${d.attempt} ---\n`);
          err.append(`\n--- attempt ${d.attempt} ---\n`);
        }
        attempt = d.attempt || attempt;
        const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.append(d.text);
        if (atEnd) pre.scrollTop = pre.scrollHeight;
      });
    } else if (!ended) {
      outputNote = h("p", { class: "small muted" }, "The step has not ended: its output is shown when it does.");
    }
    fill(
      box,
      h("div", { class: "panel-head" }, h("h2", {}, name), badge(step.status), close),
      facts([
        ["Index", String(step.index)],
        ["Attempts", String(step.attempt || 0)],
        ["Priority", step.priority],
        ["Started", time(step.started_at)],
        ["Finished", time(step.finished_at)],
        ["Took", step.started_at ? duration(between(step.started_at, step.finished_at)) : "—"],
        step.note ? ["Note", step.note] : null,
        r && r.error_type ? ["Error type", h("code", {}, r.error_type)] : null,
        r && r.error_message ? ["Error", h("span", { class: "error" }, r.error_message)] : null,
        logs.exit_code !== null && logs.exit_code !== undefined ? ["Exit code", String(logs.exit_code)] : null,
      ]),
      extra(step),
      h("h3", {}, "Output"),
      outputNote,
      h("div", { class: "log-label" }, "stdout"),
      out,
      h("div", { class: "log-label" }, "stderr"),
      err,
      logs.stdout == null && logs.stderr == null && ended
        ? h("p", { class: "small muted" }, "This step's action captures no output.")
        : null,
      step.items ? h("details", { open: true }, h("summary", {}, `Items (${step.items.length})`), itemsList(step)) : null,
      h("details", { open: true }, h("summary", {}, "Result"), r ? jsonBlock(r.data) : h("p", { class: "muted" }, "No result yet.")),
      r ? h("details", {}, h("summary", {}, "Full record"), jsonBlock(step)) : null,
    );
  }
  return {
    show,
    stop: () => {
      current++;
      stopStream?.();
      stopStream = null;
    },
  };
}
