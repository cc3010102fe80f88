// A run as the run page holds it: its steps by index, their dependencies
// (declared, and implied by `${STEP.…}` references, as the engine reads
// them) and execution levels, and the attempts of each step, kept up to
// date from the run's progress events (`tasks_started`, `tasks_finished`).

const TERMINAL = new Set(["completed", "failed", "cancelled", "skipped"]);

export function isTerminal(status) {
  return TERMINAL.has(status);
}

export class RunModel {
  constructor(run, steps, definition) {
    this.run = run;
    this.steps = [];
    for (const st of steps) this.steps[st.index] = st;
    for (let i = 0; i < this.steps.length; i++) {
      if (!this.steps[i]) this.steps[i] = { index: i, name: `#${i}`, status: "pending", attempt: 0 };
    }
    this.byName = new Map(this.steps.map((st) => [st.name, st.index]));
    this.deps = dependencies(definition, this.byName, this.steps.length);
    this.levels = levels(this.deps);
    /** Per step: attempts as {start, end, first, last, status} (times in ms). */
    this.segments = this.steps.map(() => []);
    this.sawEvents = false;
  }

  get size() {
    return this.steps.length;
  }

  /** Step counts by state. */
  counts() {
    const c = {};
    for (const st of this.steps) c[st.status] = (c[st.status] || 0) + 1;
    return c;
  }

  /**
   * Applies one stored event; returns the indices of the steps whose state
   * changed.
   */
  apply(ev) {
    const changed = [];
    const at = Date.parse(ev.at);
    if (ev.kind === "tasks_started") {
      this.sawEvents = true;
      for (const [i, attempt] of startedEntries(ev.data)) {
        const st = this.steps[i];
        if (!st) continue;
        const segs = this.segments[i];
        const open = segs.length && segs[segs.length - 1].end === null;
        if (!open) segs.push({ start: at, end: null, first: attempt, last: attempt, status: "running" });
        // A stored state that is already past this attempt stays.
        if (isTerminal(st.status) && (st.attempt || 0) >= attempt) continue;
        st.status = "running";
        st.attempt = Math.max(st.attempt || 0, attempt);
        st.started_at = ev.at;
        st.finished_at = null;
        changed.push(i);
      }
    } else if (ev.kind === "tasks_finished") {
      this.sawEvents = true;
      for (const [i, status, attempt] of finishedEntries(ev.data)) {
        const st = this.steps[i];
        if (!st) continue;
        const segs = this.segments[i];
        const last = segs[segs.length - 1];
        if (last && last.end === null) {
          last.end = at;
          last.status = status;
          last.last = Math.max(last.first, attempt);
        } else if (attempt > 0) {
          const start = st.started_at ? Date.parse(st.started_at) : at;
          segs.push({ start: Math.min(start, at), end: at, first: attempt, last: attempt, status });
        }
        if (st.status !== status || !st.finished_at) changed.push(i);
        st.status = status;
        st.finished_at = ev.at;
        if (attempt > 0) st.attempt = Math.max(st.attempt || 0, attempt);
      }
    }
    return changed;
  }

  /**
   * Attempts for the timeline: from events when the run has them, else one
   * bar per step from its recorded start and end.
   */
  attemptsOf(i) {
    if (this.sawEvents) return this.segments[i];
    const st = this.steps[i];
    if (!st.started_at) return [];
    return [
      {
        start: Date.parse(st.started_at),
        end: st.finished_at ? Date.parse(st.finished_at) : null,
        first: st.attempt || 1,
        last: st.attempt || 1,
        status: st.status,
      },
    ];
  }

  /** Replaces steps with fresher records from the API. */
  update(steps) {
    const changed = [];
    for (const fresh of steps) {
      const st = this.steps[fresh.index];
      if (!st) continue;
      if (st.status !== fresh.status || st.attempt !== fresh.attempt) changed.push(fresh.index);
      Object.assign(st, fresh);
    }
    return changed;
  }
}

/** `"4:1 5:1"` (or the older `[[4, 1]]`) as [index, attempt] pairs. */
function startedEntries(data) {
  const t = data && data.tasks;
  if (typeof t === "string") {
    return t
      .split(" ")
      .filter(Boolean)
      .map((e) => e.split(":").map(Number))
      .filter((p) => p.length === 2 && p.every(Number.isFinite));
  }
  if (Array.isArray(t)) return t.map((p) => [Number(p[0]), Number(p[1])]);
  return [];
}

/** `"4:completed:1"` (or `[[4, "completed", 1]]`) as [index, status, attempt]. */
function finishedEntries(data) {
  const t = data && data.tasks;
  if (typeof t === "string") {
    return t
      .split(" ")
      .filter(Boolean)
      .map((e) => {
        const [i, s, a] = e.split(":");
        return [Number(i), s, Number(a || 0)];
      })
      .filter(([i, s]) => Number.isFinite(i) && s);
  }
  if (Array.isArray(t)) return t.map((p) => [Number(p[0]), String(p[1]), Number(p[2] || 0)]);
  return [];
}

/**
 * Each step's dependencies by index: the declared ones, and a step named by
 * a `${STEP.result…}` or `${STEP.status}` reference in its parameters or its
 * `when` condition (not in program source such as shell.script's script,
 * where the engine substitutes nothing). `$${` is an escape.
 */
export function dependencies(definition, byName, n) {
  const wf = definition && (definition.workflow || definition);
  const steps = (wf && wf.steps) || [];
  const deps = [];
  for (let i = 0; i < n; i++) {
    const step = steps[i] || {};
    const set = new Set();
    for (const d of step.dependencies || []) {
      const j = byName.get(d);
      if (j !== undefined && j !== i) set.add(j);
    }
    const scan = (v) => {
      if (typeof v === "string") {
        for (const ref of references(v)) {
          const j = stepOf(ref, byName);
          if (j !== undefined && j !== i) set.add(j);
        }
      } else if (Array.isArray(v)) {
        for (const x of v) scan(x);
      } else if (v && typeof v === "object") {
        for (const x of Object.values(v)) scan(x);
      }
    };
    const script = step.module === "shell" && step.action === "script";
    for (const [k, x] of Object.entries(step.parameters || {})) {
      if (!(script && k === "script")) scan(x);
    }
    const when = step.conditions && step.conditions.when;
    if (when && typeof when.ref === "string") scan(when.ref);
    deps.push([...set]);
  }
  return deps;
}

function* references(text) {
  const re = /(\$?)\$\{([^}]*)\}/g;
  let m;
  while ((m = re.exec(text))) {
    if (m[1] !== "$") yield m[2].trim();
  }
}

function stepOf(ref, byName) {
  for (let k = ref.indexOf("."); k > 0; k = ref.indexOf(".", k + 1)) {
    const head = ref.slice(0, k);
    const rest = ref.slice(k + 1);
    if ((rest === "status" || rest === "result" || /^result[.[]/.test(rest)) && byName.has(head)) {
      return byName.get(head);
    }
  }
  return undefined;
}

/**
 * Execution levels: a step's level is one more than its deepest
 * dependency's (0 for a step with none). Steps caught in a cycle (a saved
 * run has none) go after the rest.
 */
export function levels(deps) {
  const n = deps.length;
  const level = new Array(n).fill(0);
  const indeg = new Array(n).fill(0);
  const out = Array.from({ length: n }, () => []);
  for (let i = 0; i < n; i++) {
    for (const d of deps[i]) {
      out[d].push(i);
      indeg[i]++;
    }
  }
  const queue = [];
  for (let i = 0; i < n; i++) if (!indeg[i]) queue.push(i);
  let seen = 0;
  for (let q = 0; q < queue.length; q++) {
    const i = queue[q];
    seen++;
    for (const j of out[i]) {
      level[j] = Math.max(level[j], level[i] + 1);
      if (--indeg[j] === 0) queue.push(j);
    }
  }
  if (seen < n) {
    const max = level.reduce((a, b) => Math.max(a, b), 0);
    for (let i = 0; i < n; i++) if (indeg[i] > 0) level[i] = max + 1;
  }
  return level;
}
