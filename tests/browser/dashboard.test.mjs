// The dashboard end to end, in headless Chromium (Debian's `chromium`,
// driven by playwright-core): `orch serve` on a loopback port with a
// temporary ORCH_HOME, the printed link opened (the token in its fragment),
// a run followed from pending to completed in its graph, a running run
// cancelled from its page, a run waiting for its concurrency key, a step's output opened, a definition's problems
// shown at their lines, a 10,000-step run drawn aggregated, the projects and
// system pages. Screenshots go to target/dashboard/*.png.
//
// Nothing waits a fixed time: each check waits for what the page shows,
// with a deadline, and the first run's first step waits for a file the test
// writes once it has seen the other steps pending.
//
// Environment: ORCH_BIN (default target/debug/orch), CHROMIUM (default
// /usr/bin/chromium).

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const bin = process.env.ORCH_BIN || join(root, "target/debug/orch");
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";
const shots = join(root, "target/dashboard");
/** The deadline of one wait for the page. */
const WAIT = 30000;

let home;
let server;
let serverLog = "";
let api;
let token;
let dashboard;
let browser;
let page;
const pageErrors = [];

/** Starts `orch serve` and reads the address, token and link it prints. */
function startServer() {
  return new Promise((ok, fail) => {
    server = spawn(bin, ["serve", "--bind", "127.0.0.1:0"], {
      cwd: home,
      env: { ...process.env, ORCH_HOME: join(home, "home"), NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const deadline = setTimeout(() => fail(new Error(`orch serve printed no address:\n${serverLog}`)), WAIT);
    const read = (chunk) => {
      serverLog += chunk;
      const addr = /^orch serve: (http:\/\/\S+) /m.exec(serverLog);
      const link = /^dashboard: (http:\/\/\S+)$/m.exec(serverLog);
      const tok = /^token: ([0-9a-f]+)$/m.exec(serverLog);
      if (addr && link && tok) {
        clearTimeout(deadline);
        ok({ api: addr[1], dashboard: link[1], token: tok[1] });
      }
    };
    server.stdout.setEncoding("utf8").on("data", read);
    server.stderr.setEncoding("utf8").on("data", (c) => (serverLog += c));
    server.on("error", fail);
    server.on("exit", (code) => fail(new Error(`orch serve exited (${code}):\n${serverLog}`)));
  });
}

async function call(path, { method = "GET", body } = {}) {
  const res = await fetch(api + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

async function shot(name) {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

/** Waits until the graph node of `step` shows `state`. */
async function nodeState(step, state) {
  await page.locator(`svg.dag .node[data-step="${step}"][data-state="${state}"]`).waitFor({ timeout: WAIT });
}

before(async () => {
  mkdirSync(shots, { recursive: true });
  home = mkdtempSync(join(tmpdir(), "orch-dashboard-"));
  ({ api, dashboard, token } = await startServer());
  browser = await chromium.launch({
    executablePath: browserPath,
    // Root in CI: Chromium's sandbox needs user namespaces it may not have.
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error") pageErrors.push(m.text());
  });
});

after(async () => {
  await browser?.close();
  if (server && server.exitCode === null) {
    const ended = new Promise((r) => server.once("exit", r));
    server.kill("SIGTERM");
    await ended;
  }
  if (home) rmSync(home, { recursive: true, force: true });
});

describe("the dashboard", () => {
  test("the printed link opens the dashboard with the token, and takes it out of the address bar", async () => {
    assert.match(dashboard, /^http:\/\/127\.0\.0\.1:\d+\/#token=[0-9a-f]+$/);
    await page.goto(dashboard);
    await page.locator("#runs-table").waitFor({ timeout: WAIT });
    assert.equal(await page.locator("#token-dialog[open]").count(), 0, "no token form");
    const url = page.url();
    assert.ok(!url.includes(token), `the token left the address: ${url}`);
    assert.match(url, /#\/runs$/);
  });

  let first;
  test("a submitted run's graph turns from pending to completed", async () => {
    const gate = join(home, "gate");
    const definition = {
      name: "dashboard-demo",
      description: "a gate, two branches, a join",
      steps: [
        {
          name: "gate",
          module: "shell",
          action: "script",
          parameters: {
            script: 'echo "waiting for the gate"; while [ ! -e "$1" ]; do sleep 0.05; done; echo "gate opened"',
            args: [gate],
          },
        },
        { name: "fetch", module: "shell", action: "exec", parameters: { program: "echo", args: ["fetched 42 rows"] }, dependencies: ["gate"] },
        { name: "transform", module: "core", action: "sleep", parameters: { ms: 300 }, dependencies: ["gate"] },
        { name: "report", module: "shell", action: "exec", parameters: { program: "echo", args: ["report written"] }, dependencies: ["fetch", "transform"] },
      ],
    };
    first = (await call("/runs", { method: "POST", body: { definition } })).run_id;
    await page.goto(`${api}/#/runs/${first}`);
    await page.locator("svg.dag .node").first().waitFor({ timeout: WAIT });
    assert.equal(await page.locator("svg.dag .node").count(), 4);
    // The gate holds the others back: they are pending, the gate runs.
    await nodeState("gate", "running");
    for (const s of ["fetch", "transform", "report"]) await nodeState(s, "pending");
    // Three levels, left to right: gate, {fetch, transform}, report.
    const x = async (s) => (await page.locator(`svg.dag .node[data-step="${s}"]`).boundingBox()).x;
    assert.ok((await x("gate")) < (await x("fetch")), "gate before fetch");
    assert.equal(Math.round(await x("fetch")), Math.round(await x("transform")), "fetch and transform on one level");
    assert.ok((await x("transform")) < (await x("report")), "transform before report");
    assert.equal(await page.locator("svg.dag .edge").count(), 4);
    await shot("run-pending");
    // The running step's output, live: what it printed so far, then the rest
    // when it goes on.
    await page.locator('svg.dag .node[data-step="gate"]').click();
    await page.locator("#step-stdout", { hasText: "waiting for the gate" }).waitFor({ timeout: WAIT });
    assert.doesNotMatch(await page.locator("#step-stdout").innerText(), /gate opened/);
    await shot("step-live-output");
    writeFileSync(gate, "");
    await page.locator("#step-stdout", { hasText: "gate opened" }).waitFor({ timeout: WAIT });
    await page.locator('#step-panel .panel-head .badge[data-state="completed"]').waitFor({ timeout: WAIT });
    for (const s of ["gate", "fetch", "transform", "report"]) await nodeState(s, "completed");
    await page.locator('#main h1 .badge[data-state="completed"]').waitFor({ timeout: WAIT });
    // The timeline has a bar for each step's attempt.
    await page.locator('.gantt-row[data-step="report"] rect.bar').waitFor({ timeout: WAIT });
    assert.equal(await page.locator(".gantt-row").count(), 4);
    await shot("run-completed");
  });

  test("a step's output and result open on a click", async () => {
    await page.locator('svg.dag .node[data-step="fetch"]').click();
    await page.locator("#step-panel:not([hidden])").waitFor({ timeout: WAIT });
    await page.locator("#step-stdout", { hasText: "fetched 42 rows" }).waitFor({ timeout: WAIT });
    assert.match(page.url(), /\/steps\/fetch$/);
    const panel = await page.locator("#step-panel").innerText();
    assert.match(panel, /Exit code\s+0/);
    await page.locator('svg.dag .node[data-step="gate"]').click();
    await page.locator("#step-stdout", { hasText: "gate opened" }).waitFor({ timeout: WAIT });
    await shot("step-log");
  });

  test("a running run is cancelled from its page", async () => {
    const definition = {
      name: "dashboard-long",
      steps: [
        { name: "long", module: "shell", action: "exec", parameters: { program: "sleep", args: ["600"] } },
        { name: "after", module: "core", action: "noop", dependencies: ["long"] },
      ],
    };
    const id = (await call("/runs", { method: "POST", body: { definition } })).run_id;
    await page.goto(`${api}/#/runs/${id}`);
    await nodeState("long", "running");
    await nodeState("after", "pending");
    const cancel = page.locator("#cancel-run");
    await cancel.click();
    await page.locator("#cancel-run", { hasText: "Click again" }).waitFor({ timeout: WAIT });
    await cancel.click();
    await page.locator('#main h1 .badge[data-state="cancelled"]').waitFor({ timeout: WAIT });
    await nodeState("long", "cancelled");
    assert.equal(await page.locator("#cancel-run").count(), 0, "no cancel button on an ended run");
    const run = await call(`/runs/${id}`);
    assert.equal(run.state, "cancelled");
    await shot("run-cancelled");
  });

  test("a run that waits for its concurrency key says so, and its page becomes the run's once it starts", async () => {
    const gate = join(home, "key-gate");
    const keyed = (steps) => ({ name: "dashboard-keyed", concurrency: { key: "dash", limit: 1 }, steps });
    const holding = keyed([
      { name: "hold", module: "shell", action: "script", parameters: { script: 'while [ ! -e "$1" ]; do sleep 0.05; done', args: [gate] } },
    ]);
    const holder = (await call("/runs", { method: "POST", body: { definition: holding } })).run_id;
    const waiting = await call("/runs", { method: "POST", body: { definition: keyed([{ name: "after-key", module: "core", action: "noop" }]) } });
    assert.equal(waiting.state, "waiting");
    assert.deepEqual(waiting.waiting.holders, [holder]);
    await page.goto(`${api}/#/runs/${waiting.run_id}`);
    await page.locator('#main h1 .badge[data-state="waiting"]').waitFor({ timeout: WAIT });
    assert.match(await page.locator("#main").innerText(), /Waits for a slot of the concurrency key dash \(limit 1\)/);
    await shot("run-waiting");
    writeFileSync(gate, "");
    await page.locator('#main h1 .badge[data-state="completed"]').waitFor({ timeout: WAIT });
    await nodeState("after-key", "completed");
  });

  test("a failed run shows its error; Retry and Retry from a step start new runs where the server offers them", async () => {
    const file = join(home, "flaky-ok");
    const definition = {
      name: "dashboard-flaky",
      steps: [
        { name: "prepare", module: "shell", action: "exec", parameters: { program: "echo", args: ["prepared"] } },
        {
          name: "flaky",
          module: "shell",
          action: "script",
          parameters: { script: '[ -e "$1" ] || { echo "not yet" >&2; exit 3; }; echo "worked"', args: [file] },
          dependencies: ["prepare"],
        },
      ],
    };
    const failed = await call("/runs", { method: "POST", body: { definition, wait: true } });
    assert.equal(failed.state, "failed");
    await page.goto(`${api}/#/runs/${failed.id}/steps/flaky`);
    await nodeState("flaky", "failed");
    await page.locator("#step-stderr", { hasText: "not yet" }).waitFor({ timeout: WAIT });
    assert.match(await page.locator("#step-panel").innerText(), /Exit code\s+3/);
    await shot("run-failed");
    const doc = await call("/openapi.json");
    if (!doc.paths["/runs/{id}/retry"]?.post) {
      // A server without the route: no button offers it.
      assert.equal(await page.locator("#retry-run, #retry-from").count(), 0);
      return;
    }
    writeFileSync(file, "");
    const left = (old) => page.waitForFunction((o) => /^#\/runs\/[^/]+$/.test(location.hash) && !location.hash.includes(o), old, { timeout: WAIT });
    await page.locator("#retry-run").click();
    await left(failed.id);
    await nodeState("flaky", "completed");
    await page.locator('#main h1 .badge[data-state="completed"]').waitFor({ timeout: WAIT });
    // From a step of the failed run: a new run again.
    await page.goto(`${api}/#/runs/${failed.id}/steps/flaky`);
    await page.locator("#retry-from").click();
    await left(failed.id);
    await nodeState("flaky", "completed");
    await page.locator('#main h1 .badge[data-state="completed"]').waitFor({ timeout: WAIT });
    await shot("run-retried");
  });

  test("the runs list shows the runs with their states, live", async () => {
    await page.goto(`${api}/#/runs`);
    await page.locator(`#runs-table tr[data-run-id="${first}"][data-state="completed"]`).waitFor({ timeout: WAIT });
    await page.locator('#runs-table tr[data-state="cancelled"]').waitFor({ timeout: WAIT });
    // A run started meanwhile appears without a reload.
    const id = (await call("/runs", { method: "POST", body: { definition: { name: "dashboard-late", steps: [{ name: "x", module: "core", action: "noop" }] } } })).run_id;
    await page.locator(`#runs-table tr[data-run-id="${id}"]`).waitFor({ timeout: WAIT });
    await shot("runs");
  });

  test("a definition's problems are shown at their lines", async () => {
    await page.goto(`${api}/#/validate`);
    const text = [
      "name: broken",
      "steps:",
      "  - name: a",
      "    module: core",
      "    action: noop",
      "    dependencies: [nowhere]",
      "    colour: red",
      "",
    ].join("\n");
    await page.locator("#definition").fill(text);
    await page.locator("#validate").click();
    await page.locator('#problems li[data-line="6"]').waitFor({ timeout: WAIT });
    await page.locator('#problems li[data-line="7"]').waitFor({ timeout: WAIT });
    assert.equal(await page.locator(".gutter .bad").count(), 2);
    assert.match(await page.locator('.gutter .bad[data-line="6"]').getAttribute("title"), /nowhere/);
    await shot("workflow-problems");
    // A saved workflow's definition is shown as YAML that validates as it is.
    await page.goto(`${api}/#/workflows/deploy`);
    await page.locator("svg.dag .node").first().waitFor({ timeout: WAIT });
    await page.locator("#validate").click();
    await page.locator("#valid").waitFor({ timeout: WAIT });
    await shot("workflow");
  });

  test("a 10,000-step run is drawn aggregated by level and its steps scroll virtualised", async () => {
    const steps = [];
    for (let l = 0; l < 100; l++) {
      for (let k = 0; k < 100; k++) {
        const step = { name: `s${l}_${k}`, module: "core", action: "noop" };
        if (l > 0) step.dependencies = [`s${l - 1}_${k}`, `s${l - 1}_${(k * 7 + 3) % 100}`];
        steps.push(step);
      }
    }
    const r = await call("/runs", { method: "POST", body: { definition: { name: "dashboard-large", steps }, wait: true } });
    assert.equal(r.state, "completed");
    await page.goto(`${api}/#/runs/${r.id}`);
    await page.locator("svg.dag.aggregate").waitFor({ timeout: WAIT });
    assert.equal(await page.locator("svg.aggregate .level").count(), 100);
    assert.equal(await page.locator("svg.dag .node").count(), 0, "no node per step");
    const rows = await page.locator(".steps-rows .step-row").count();
    assert.ok(rows > 0 && rows < 200, `the steps table drew ${rows} rows of 10000`);
    // A count in the graph lists its steps.
    await page.locator('svg.aggregate .level[data-level="42"] .count[data-state="completed"]').click();
    await page.locator(".steps-rows .step-row", { hasText: "s42_0" }).waitFor({ timeout: WAIT });
    await shot("large-run");
  });

  test("projects show milestones and metrics; the system page shows health and status", async () => {
    await call("/projects", { method: "POST", body: { name: "demo", template: "ai_analysis", description: "A demo project" } });
    await call("/projects/demo/milestones", { method: "POST", body: { key: "first-run", data: { note: "went well" } } });
    await call("/projects/demo/metrics", { method: "POST", body: { coverage: 0.82, lines: 1200, files: 37 } });
    await page.goto(`${api}/#/projects`);
    await page.locator('tr[data-project="demo"]').waitFor({ timeout: WAIT });
    await page.goto(`${api}/#/projects/demo`);
    await page.locator('tr[data-milestone="first-run"]').waitFor({ timeout: WAIT });
    await page.locator('tr[data-metric="coverage"]').waitFor({ timeout: WAIT });
    assert.equal(await page.locator("svg.metric-chart rect").count(), 3);
    await shot("project");
    await page.goto(`${api}/#/system`);
    await page.locator('#health-card [data-component="workflow_manager"]').waitFor({ timeout: WAIT });
    await page.locator("#status-card").waitFor({ timeout: WAIT });
    await page.locator('#resources-card tr[data-resource="system_cpu"]').waitFor({ timeout: WAIT });
    await shot("system");
  });

  test("a wrong token brings back the token form; the pages made no script errors", async () => {
    await page.evaluate(() => sessionStorage.setItem("orch.token", "not-the-token"));
    await page.goto(`${api}/#/runs`);
    await page.locator("#token-dialog[open]").waitFor({ timeout: WAIT });
    await page.locator("#token-error", { hasText: "refused" }).waitFor({ timeout: WAIT });
    await shot("token");
    await page.locator("#token-input").fill(token);
    await page.locator("#token-form button[type=submit]").click();
    await page.locator("#runs-table tr[data-run-id]").first().waitFor({ timeout: WAIT });
    // The 401 answers above are logged by the browser as failed loads; nothing else may be.
    const real = pageErrors.filter((e) => !/status of 401/.test(e));
    assert.deepEqual(real, []);
    // The server's log never holds the token beyond the lines printed at start.
    const later = serverLog.split("\n").filter((l) => !/^(token|dashboard): /.test(l));
    assert.ok(!later.some((l) => l.includes(token)), "the token is not logged");
  });
});
