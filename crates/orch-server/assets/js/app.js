// The dashboard's entry point: the token, the routes (`#/runs`, `#/runs/ID`,
// `#/workflows`, `#/workflows/NAME`, `#/projects`, `#/projects/NAME`,
// `#/system`), and the health light in the header.

import { api, forgetToken, onTokenNeeded, setToken, takeTokenFromFragment, token } from "./api.js";
import { errorBox, fill, h } from "./dom.js";
import { runsPage } from "./runs.js";
import { runPage } from "./run.js";
import { workflowPage, workflowsPage } from "./workflows.js";
import { projectPage, projectsPage } from "./projects.js";
import { systemPage } from "./system.js";

const main = document.getElementById("main");
const dialog = document.getElementById("token-dialog");

/** What the current page set up and must stop when the page changes. */
let cleanup = [];
/** Counts page changes: a page still loading when another is opened is dropped. */
let generation = 0;

const ROUTES = [
  [/^#\/runs\/([^/]+)(?:\/steps\/(.+))?$/, (m) => runPage(m[1], m[2] && decodeURIComponent(m[2]))],
  [/^#\/runs(?:\?(.*))?$/, (m) => runsPage(new URLSearchParams(m[1] || ""))],
  [/^#\/workflows\/(.+)$/, (m) => workflowPage(decodeURIComponent(m[1]))],
  [/^#\/workflows$/, () => workflowsPage()],
  [/^#\/validate$/, () => workflowPage(null)],
  [/^#\/projects\/(.+)$/, (m) => projectPage(decodeURIComponent(m[1]))],
  [/^#\/projects$/, () => projectsPage()],
  [/^#\/system$/, () => systemPage()],
];

async function route() {
  for (const f of cleanup) f();
  cleanup = [];
  const gen = ++generation;
  // A link with a new token may be opened in a tab that shows the dashboard.
  takeTokenFromFragment();
  const hash = location.hash || "#/runs";
  const section = { validate: "workflows" }[hash.split("/")[1]] || hash.split("/")[1] || "runs";
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.nav === section.replace(/\?.*/, ""));
  }
  if (!token()) {
    askToken("");
    fill(main, h("p", { class: "muted" }, "Waiting for the server's token…"));
    return;
  }
  for (const [re, page] of ROUTES) {
    const m = re.exec(hash);
    if (!m) continue;
    // Each page draws into a box of its own: one that is left while it
    // loads goes on drawing into a box that is no longer shown.
    const box = h("div", { class: "page" });
    main.replaceChildren(box);
    window.scrollTo(0, 0);
    try {
      // A page returns what stops its timers and streams.
      const stop = await page(m)(box);
      if (typeof stop === "function") {
        if (gen === generation) cleanup.push(stop);
        else stop();
      }
    } catch (e) {
      fill(box, errorBox(e));
    }
    return;
  }
  location.replace("#/runs");
}

function askToken(reason) {
  const err = document.getElementById("token-error");
  err.hidden = !reason;
  err.textContent = reason || "";
  if (!dialog.open) dialog.showModal();
  document.getElementById("token-input").focus();
}

document.getElementById("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = document.getElementById("token-input");
  setToken(input.value, document.getElementById("token-remember").checked);
  input.value = "";
  dialog.close();
  route();
});

dialog.addEventListener("cancel", (ev) => ev.preventDefault());

document.getElementById("forget").addEventListener("click", () => {
  forgetToken();
  for (const f of cleanup) f();
  cleanup = [];
  askToken("");
});

onTokenNeeded((reason) => {
  forgetToken();
  askToken(reason);
});

/** The health light: `GET /health` needs no token, so it shows even before one is given. */
async function health() {
  const el = document.getElementById("health");
  try {
    const r = await api("/health", { ok: [503] });
    const st = r.overall_status || "unknown";
    el.className = `health hs-${st}`;
    el.textContent = st;
    el.title = (r.issues || []).join("\n") || "all components healthy";
  } catch (e) {
    el.className = "health hs-unhealthy";
    el.textContent = "unreachable";
    el.title = String(e.message || e);
  }
}

window.addEventListener("hashchange", route);
health();
setInterval(() => {
  if (!document.hidden) health();
}, 10000);
route();
