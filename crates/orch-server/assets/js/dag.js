// The run's graph as SVG, laid out in columns by execution level and
// coloured by state. Up to FULL_LIMIT steps every step is a node; above it
// the graph is aggregated: one box per level (or band of levels) with its
// steps counted by state, which stays light at 10,000 steps and beyond.

import { h, s, STATES } from "./dom.js";

/** The most steps drawn one node each. */
export const FULL_LIMIT = 500;

const W = 168;
const H = 30;
const GX = 56;
const GY = 12;
const PAD = 16;

/** Zoom buttons around an SVG whose natural size is `size()`: [width, height]. */
function zoomable(svg, size) {
  let scale = 1;
  const view = h("div", { class: "graph-view" }, svg);
  const apply = () => {
    const [w, ht] = size();
    svg.setAttribute("width", String(Math.max(1, Math.round(w * scale))));
    svg.setAttribute("height", String(Math.max(1, Math.round(ht * scale))));
  };
  const fit = () => {
    const avail = view.clientWidth - 4;
    scale = avail > 0 ? Math.min(1, avail / size()[0]) : 1;
    apply();
  };
  const tools = h(
    "div",
    { class: "graph-tools" },
    h("button", { type: "button", title: "Zoom out", onclick: () => ((scale = Math.max(0.1, scale / 1.25)), apply()) }, "−"),
    h("button", { type: "button", title: "Zoom in", onclick: () => ((scale = Math.min(3, scale * 1.25)), apply()) }, "+"),
    h("button", { type: "button", title: "Fit the width", onclick: fit }, "Fit"),
    h("button", { type: "button", title: "Actual size", onclick: () => ((scale = 1), apply()) }, "1:1"),
  );
  apply();
  return { el: h("div", { class: "graph" }, tools, view), fit, apply };
}

function truncate(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * Every step a node. `onSelect(i)` is called on a click. Returns `{el,
 * update(indices), select(i)}`.
 */
export function fullGraph(model, onSelect) {
  const n = model.size;
  const lv = model.levels;
  const cols = [];
  for (let i = 0; i < n; i++) (cols[lv[i]] ||= []).push(i);
  for (let c = 0; c < cols.length; c++) cols[c] ||= [];
  // Order each column by the mean position of the steps it depends on
  // (one sweep down, one up), which untangles most edges.
  const pos = new Array(n).fill(0);
  cols.forEach((col) => col.forEach((i, k) => (pos[i] = k)));
  const children = Array.from({ length: n }, () => []);
  for (let i = 0; i < n; i++) for (const d of model.deps[i]) children[d].push(i);
  const sweep = (col, nbrs) => {
    const key = new Map(col.map((i) => {
      const ns = nbrs(i);
      return [i, ns.length ? ns.reduce((a, j) => a + pos[j], 0) / ns.length : pos[i]];
    }));
    col.sort((a, b) => key.get(a) - key.get(b) || a - b);
    col.forEach((i, k) => (pos[i] = k));
  };
  for (let c = 1; c < cols.length; c++) sweep(cols[c], (i) => model.deps[i]);
  for (let c = cols.length - 2; c >= 0; c--) sweep(cols[c], (i) => children[i]);

  const tallest = Math.max(1, ...cols.map((c) => c.length));
  const width = PAD * 2 + cols.length * W + Math.max(0, cols.length - 1) * GX;
  const height = PAD * 2 + tallest * H + (tallest - 1) * GY;
  const xy = new Array(n);
  cols.forEach((col, c) => {
    const offset = ((tallest - col.length) * (H + GY)) / 2;
    col.forEach((i, k) => (xy[i] = [PAD + c * (W + GX), PAD + offset + k * (H + GY)]));
  });

  const edges = s("g", { class: "edges" });
  const nodes = s("g", { class: "nodes" });
  const edgeOf = [];
  for (let i = 0; i < n; i++) {
    for (const d of model.deps[i]) {
      const [x1, y1] = [xy[d][0] + W, xy[d][1] + H / 2];
      const [x2, y2] = [xy[i][0], xy[i][1] + H / 2];
      const mid = (x1 + x2) / 2;
      const p = s("path", {
        class: "edge",
        d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2 - 4},${y2}`,
        "marker-end": "url(#arrow)",
        "data-from": d,
        "data-to": i,
      });
      edgeOf.push([d, i, p]);
      edges.append(p);
    }
  }
  const els = new Array(n);
  for (let i = 0; i < n; i++) {
    const st = model.steps[i];
    const label = s("text", { x: 10, y: H / 2 + 4 }, truncate(st.name, 20));
    const tip = s("title");
    const g = s(
      "g",
      {
        class: `node st-${st.status}`,
        transform: `translate(${xy[i][0]},${xy[i][1]})`,
        "data-step": st.name,
        "data-index": i,
        "data-state": st.status,
        tabindex: 0,
        role: "button",
      },
      tip,
      s("rect", { width: W, height: H, rx: 6 }),
      label,
      s("text", { class: "attempts", x: W - 8, y: H / 2 + 4, "text-anchor": "end" }),
    );
    g.addEventListener("click", () => onSelect(i));
    g.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") onSelect(i);
    });
    els[i] = g;
    nodes.append(g);
  }
  const defs = s(
    "defs",
    {},
    s(
      "marker",
      { id: "arrow", viewBox: "0 0 10 10", refX: 8, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto" },
      s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }),
    ),
  );
  const svg = s(
    "svg",
    { class: "dag", viewBox: `0 0 ${width} ${height}`, "data-steps": n, role: "img", "aria-label": `graph of ${n} steps` },
    defs,
    edges,
    nodes,
  );
  const update = (indices) => {
    for (const i of indices) {
      const st = model.steps[i];
      const g = els[i];
      g.setAttribute("class", `node st-${st.status}${g.classList.contains("selected") ? " selected" : ""}`);
      g.dataset.state = st.status;
      g.firstChild.textContent = `${st.name}: ${st.status}${st.attempt > 1 ? ` (${st.attempt} attempts)` : ""}`;
      g.lastChild.textContent = st.attempt > 1 ? `×${st.attempt}` : "";
    }
  };
  update([...Array(n).keys()]);
  const select = (i) => {
    els.forEach((g, k) => g.classList.toggle("selected", k === i));
    for (const [a, b, p] of edgeOf) p.classList.toggle("hot", a === i || b === i);
  };
  const z = zoomable(svg, () => [width, height]);
  return { el: z.el, update, select, fit: z.fit };
}

/**
 * One box per level (per band of levels when there are more than 100),
 * each listing its steps by state; a click on a state row calls
 * `onPick(fromLevel, toLevel, state)`.
 */
export function aggregateGraph(model, onPick) {
  const lv = model.levels;
  const maxLevel = lv.reduce((a, b) => Math.max(a, b), 0);
  const band = Math.max(1, Math.ceil((maxLevel + 1) / 100));
  const nb = Math.floor(maxLevel / band) + 1;
  const BW = 150;
  const BG = 40;
  const ROW = 20;
  const svg = s("svg", { class: "dag aggregate", "data-steps": model.size, role: "img" });
  const body = s("g");
  svg.append(
    s(
      "defs",
      {},
      s(
        "marker",
        { id: "arrow-agg", viewBox: "0 0 10 10", refX: 8, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto" },
        s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }),
      ),
    ),
    body,
  );
  let size = [0, 0];
  let z = null;
  const update = () => {
    const counts = Array.from({ length: nb }, () => ({}));
    const totals = new Array(nb).fill(0);
    for (let i = 0; i < model.size; i++) {
      const b = Math.floor(lv[i] / band);
      const st = model.steps[i].status;
      counts[b][st] = (counts[b][st] || 0) + 1;
      totals[b]++;
    }
    const tallest = Math.max(1, ...counts.map((c) => Object.keys(c).length));
    const BH = 30 + tallest * ROW;
    const parts = [];
    for (let b = 0; b < nb; b++) {
      const x = PAD + b * (BW + BG);
      const from = b * band;
      const to = Math.min(maxLevel, from + band - 1);
      const name = band === 1 ? `level ${from}` : `levels ${from}–${to}`;
      const g = s(
        "g",
        { class: "level", transform: `translate(${x},${PAD})`, "data-level": from },
        s("rect", { class: "box", width: BW, height: BH, rx: 6 }),
        s("text", { class: "level-name", x: 8, y: 18 }, `${name} · ${totals[b]}`),
      );
      let y = 30;
      for (const st of STATES) {
        const c = counts[b][st];
        if (!c) continue;
        const row = s(
          "g",
          { class: `count st-${st}`, transform: `translate(8,${y})`, "data-state": st, role: "button", tabindex: 0 },
          s("title", {}, `${c} ${st} in ${name}: list them`),
          s("rect", { class: "track", width: BW - 16, height: ROW - 4, rx: 3 }),
          s("rect", { class: "fillbar", width: Math.max(2, ((BW - 16) * c) / totals[b]), height: ROW - 4, rx: 3 }),
          s("text", { x: 6, y: ROW - 8 }, `${c} ${st}`),
        );
        row.addEventListener("click", () => onPick(from, to, st));
        g.append(row);
        y += ROW;
      }
      parts.push(g);
      if (b + 1 < nb) {
        parts.push(
          s("path", {
            class: "edge",
            d: `M${x + BW},${PAD + BH / 2} L${x + BW + BG - 4},${PAD + BH / 2}`,
            "marker-end": "url(#arrow-agg)",
          }),
        );
      }
    }
    body.replaceChildren(...parts);
    size = [PAD * 2 + nb * BW + (nb - 1) * BG, PAD * 2 + BH];
    svg.setAttribute("viewBox", `0 0 ${size[0]} ${size[1]}`);
    z?.apply();
  };
  update();
  z = zoomable(svg, () => size);
  const note = h(
    "p",
    { class: "muted small" },
    `${model.size} steps: over ${FULL_LIMIT}, the graph shows each ${band === 1 ? "level" : `band of ${band} levels`} with its steps counted by state. Click a count to list those steps below.`,
  );
  return { el: h("div", {}, note, z.el), update: () => update(), select: () => {}, fit: z.fit };
}
