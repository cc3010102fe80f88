// The API client: the bearer token (from the URL fragment, the browser's
// storage, or the token form), JSON requests, and Server-Sent Events read
// with fetch() so that the token goes in the Authorization header (the
// browser's EventSource cannot send headers).

const KEY = "orch.token";

/** An answer that was not 2xx: `status`, and the server's ErrorResponse in `body`. */
export class ApiError extends Error {
  constructor(status, body, path) {
    super((body && body.error) || `HTTP ${status} for ${path}`);
    this.status = status;
    this.body = body;
    this.path = path;
  }
}

let tokenListeners = [];

/** Calls `f(reason)` whenever the server refuses the token (or there is none). */
export function onTokenNeeded(f) {
  tokenListeners.push(f);
}

export function token() {
  return sessionStorage.getItem(KEY) || localStorage.getItem(KEY) || "";
}

export function setToken(value, remember) {
  forgetToken();
  const t = value.trim();
  if (!t) return;
  (remember ? localStorage : sessionStorage).setItem(KEY, t);
}

export function forgetToken() {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
}

/**
 * Takes a token given in the URL fragment (`#token=...`, as `orch serve`
 * prints it), keeps it for this tab, and removes it from the address bar
 * and the history so that it is not bookmarked or shared by accident.
 */
export function takeTokenFromFragment() {
  const m = /^#token=([^&]*)(?:&(.*))?$/.exec(location.hash);
  if (!m) return false;
  setToken(decodeURIComponent(m[1]), false);
  const rest = m[2] ? `#${m[2]}` : "#/runs";
  history.replaceState(null, "", location.pathname + location.search + rest);
  return true;
}

function needToken(reason) {
  for (const f of tokenListeners) f(reason);
}

function headers(extra) {
  const h = { Accept: "application/json", ...extra };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

/**
 * A JSON request. `body` (an object) is sent as JSON. Resolves to the
 * parsed answer; rejects with an ApiError for a status other than 2xx
 * (asking for the token again on 401).
 */
export async function api(path, { method = "GET", body, signal, ok = [] } = {}) {
  const init = { method, headers: headers(), signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { error: text };
    }
  }
  if (res.ok || ok.includes(res.status)) return data;
  if (res.status === 401) needToken(token() ? "The server refused this token." : "");
  throw new ApiError(res.status, data, path);
}

let routes = null;

/** The set of "METHOD /path" the server offers (from /openapi.json, read once). */
export async function offered() {
  if (!routes) {
    routes = api("/openapi.json").then(
      (doc) => {
        const s = new Set();
        for (const [p, ops] of Object.entries(doc.paths || {})) {
          for (const m of Object.keys(ops)) s.add(`${m.toUpperCase()} ${p}`);
        }
        return s;
      },
      (e) => {
        routes = null;
        throw e;
      },
    );
  }
  return routes;
}

/**
 * Follows a Server-Sent Events route. `onEvent({event, data, id})` gets
 * each event (data parsed as JSON when it is). The stream reconnects with
 * Last-Event-ID when the connection drops before an `end` event, after a
 * pause that grows. Returns a function that stops it.
 */
export function stream(path, onEvent, { onState } = {}) {
  const ctl = new AbortController();
  let lastId = null;
  let ended = false;
  let pause = 500;
  const run = async () => {
    while (!ctl.signal.aborted && !ended) {
      try {
        const h = headers({ Accept: "text/event-stream" });
        if (lastId !== null) h["Last-Event-ID"] = lastId;
        const res = await fetch(path, { headers: h, signal: ctl.signal });
        if (res.status === 401) {
          needToken("The server refused this token.");
          return;
        }
        if (!res.ok) {
          const text = await res.text();
          let msg = text;
          try {
            msg = JSON.parse(text).error || text;
          } catch {
            // Not JSON: shown as it is.
          }
          onState?.({ error: msg, status: res.status });
          if (res.status >= 400 && res.status < 500) return;
        } else {
          onState?.({ open: true });
          pause = 500;
          await readEvents(res.body, (ev) => {
            if (ev.id !== undefined) lastId = ev.id;
            if (ev.event === "end") ended = true;
            onEvent(ev);
          });
        }
      } catch (e) {
        if (ctl.signal.aborted) return;
        onState?.({ error: String(e.message || e) });
      }
      if (ended || ctl.signal.aborted) break;
      onState?.({ reconnecting: true });
      await new Promise((r) => setTimeout(r, pause));
      pause = Math.min(pause * 2, 10000);
    }
    onState?.({ closed: true });
  };
  run();
  return () => ctl.abort();
}

/** Reads an SSE body, calling `emit` for each complete event. */
async function readEvents(body, emit) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let ev = { data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let nl;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      // A lone CR at the end may be the first half of a CRLF: wait for more.
      if (buf[nl] === "\r" && nl === buf.length - 1) break;
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf.startsWith("\r\n", nl) ? 2 : 1));
      if (line === "") {
        if (ev.data.length || ev.event) {
          const raw = ev.data.join("\n");
          let data = raw;
          try {
            data = JSON.parse(raw);
          } catch {
            // Plain text data.
          }
          emit({ event: ev.event || "message", id: ev.id, data });
        }
        ev = { data: [] };
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? "" : line.slice(colon + 1);
      if (val.startsWith(" ")) val = val.slice(1);
      if (field === "data") ev.data.push(val);
      else if (field === "event") ev.event = val;
      else if (field === "id") ev.id = val;
    }
  }
}

/** `encodeURIComponent` for a path segment. */
export const seg = encodeURIComponent;
