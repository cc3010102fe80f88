// The timeline of attempts (a Gantt chart): one row per step that started,
// in order of its first start, one bar per attempt (attempts retried within
// one start share a bar, labelled with their range), coloured by how it
// ended. Rows are virtualised, so 10,000 steps scroll lightly.

import { duration, h, s } from "./dom.js";
import { VirtualList } from "./vlist.js";

const ROW = 22;
const LABEL = 190;

export function timeline(model, onSelect) {
  let order = [];
  let t0 = 0;
  let t1 = 1;
  let chartW = 600;
  const axis = s("svg", { class: "axis", height: 24 });
  const empty = h("p", { class: "muted small" });
  const list = new VirtualList({
    rowHeight: ROW,
    height: 360,
    className: "gantt-rows",
    render: (k) => row(order[k]),
  });
  const el = h("div", { class: "gantt" }, h("div", { class: "gantt-head" }, h("span", { class: "label" }, "step"), axis), list.el, empty);

  const x = (t) => ((t - t0) / Math.max(1, t1 - t0)) * chartW;

  function row(i) {
    const st = model.steps[i];
    const svg = s("svg", { width: chartW, height: ROW });
    for (const seg of model.attemptsOf(i)) {
      const end = seg.end ?? Date.now();
      const left = x(seg.start);
      const w = Math.max(2, x(end) - left);
      const range = seg.first === seg.last ? `attempt ${seg.first}` : `attempts ${seg.first}–${seg.last}`;
      const status = seg.end === null ? "running" : seg.status;
      svg.append(
        s(
          "rect",
          { class: `bar st-${status}`, x: left, y: 4, width: w, height: ROW - 8, rx: 3 },
          s("title", {}, `${st.name}: ${range}, ${status}, ${duration((end - seg.start) / 1000)}`),
        ),
      );
      if (seg.last > 1 && w > 24) {
        svg.append(s("text", { class: "bar-label", x: left + 4, y: ROW - 8 }, `×${seg.last}`));
      }
    }
    return h(
      "div",
      { class: "gantt-row", "data-step": st.name, title: st.name, onclick: () => onSelect(i) },
      h("span", { class: "label" }, st.name),
      svg,
    );
  }

  function drawAxis() {
    axis.setAttribute("width", String(chartW));
    const ticks = [];
    const span = (t1 - t0) / 1000;
    const steps = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400];
    const every = steps.find((v) => span / v <= 8) || 86400;
    for (let v = 0; v <= span + 1e-9; v += every) {
      const px = x(t0 + v * 1000);
      ticks.push(s("line", { x1: px, x2: px, y1: 16, y2: 24 }));
      // A label that would be cut at the right edge is left out.
      if (px + 48 <= chartW) ticks.push(s("text", { x: px + 3, y: 12 }, v === 0 ? "0" : duration(v)));
    }
    axis.replaceChildren(...ticks);
  }

  /** Draws again from the model (new attempts, a longer span). */
  function update() {
    const starts = [];
    let lo = Infinity;
    let hi = -Infinity;
    let open = false;
    for (let i = 0; i < model.size; i++) {
      const segs = model.attemptsOf(i);
      if (!segs.length) continue;
      starts.push([segs[0].start, i]);
      for (const seg of segs) {
        lo = Math.min(lo, seg.start);
        if (seg.end === null) open = true;
        else hi = Math.max(hi, seg.end);
      }
    }
    starts.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    order = starts.map((p) => p[1]);
    const created = Date.parse(model.run.created_at);
    t0 = Number.isFinite(created) ? Math.min(created, lo) : lo;
    t1 = open ? Date.now() : Math.max(hi, t0 + 1);
    chartW = Math.max(300, (el.clientWidth || 900) - LABEL - 24);
    drawAxis();
    list.setCount(order.length);
    const waiting = model.size - order.length;
    empty.textContent = order.length
      ? waiting
        ? `${waiting} step(s) had no attempt in this run (not started, skipped, or kept from the run retried) and are not shown.`
        : ""
      : "No step has started yet.";
    return open;
  }

  /** Scrolls to step `i`'s row. */
  function show(i) {
    const k = order.indexOf(i);
    if (k >= 0) list.show(k);
  }

  // The chart fills its width: drawn again when that changes (a step's
  // panel opens beside it, the window is resized).
  let width = 0;
  new ResizeObserver(() => {
    if (el.clientWidth && el.clientWidth !== width) {
      width = el.clientWidth;
      update();
    }
  }).observe(el);

  return { el, update, show };
}
