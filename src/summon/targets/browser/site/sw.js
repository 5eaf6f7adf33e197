// The site's service worker (written to the site as _summon-sw.js): the app's Stack device.
//
// Requests under the site's scope go three ways:
// - summon's own files (_summon/..., this script) come from the cache filled at install, so
//   the site works with its server gone;
// - a top-level page load (a navigation to any address in the scope) gets the page shell,
//   which starts Python and shows the app in a frame at that same address;
// - everything else (the frame's pages, their styles and scripts, form posts, fetches) is the
//   app's: it is sent to a page that runs the app in its worker, over a MessagePort, and the
//   app's answer comes back as the Response.
// Pyodide never runs here: a browser stops an idle service worker after about 30 s, and the
// app must keep its state, so it lives in a worker owned by the page. If this worker was
// stopped and started again it has lost its ports: it asks the open pages for new ones.
"use strict";

const SITE = /*SUMMON_SITE*/ { version: "dev", name: "app", files: [] } /*SUMMON_SITE*/;
const CACHE = `summon-${SITE.version}`;
const SCOPE = new URL(self.registration.scope);
const RESERVED = "_summon/";
const SELF = "_summon-sw.js";
const SHELL = "index.html";
const ANSWER_MS = 90000; // the page's bridge answers 504 after 60 s; this is the backstop
const PORT_WAIT_MS = 15000;
const WATCH_MS = 250; // while a page's app answers, how often to check that the page is open
const RESEND = new Set(["GET", "HEAD", "OPTIONS"]); // sent again when that page went meanwhile
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

const ports = []; // {port, clientId, ready, started}: pages running the app, newest last
const portWaiters = [];
const OFFERS_MS = 100; // after a restart, how long the other open pages have to offer ports
const waiters = new Map(); // request id -> resolve
let nextId = 1;

self.addEventListener("install", (event) => {
  event.waitUntil(
    precache().then(
      () => self.skipWaiting(),
      async (e) => {
        // A page on its first visit waits for this worker: it says why it will not come.
        await tell({ type: "summon-install-failed", error: String((e && e.message) || e) });
        throw e;
      },
    ),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) {
        if (name.startsWith("summon-") && name !== CACHE) await caches.delete(name);
      }
      await self.clients.claim();
    })(),
  );
});

async function precache() {
  const cache = await caches.open(CACHE);
  const total = SITE.files.reduce((n, f) => n + f.size, 0);
  let done = 0;
  let told = 0;
  for (const file of SITE.files) {
    const url = new URL(file.path, SCOPE).href;
    const chunks = [];
    let response;
    try {
      response = await fetch(url, { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const reader = response.body.getReader();
      for (;;) {
        const { done: end, value } = await reader.read();
        if (end) break;
        chunks.push(value);
        done += value.length;
        if (done - told > 262144 || done === total) {
          told = done;
          tell({ type: "summon-install", done, total });
        }
      }
    } catch (e) {
      throw new Error(`${file.path}: ${e.message || e}`); // "Failed to fetch" names no file
    }
    // The body is decoded now: the encoding and length of the wire no longer describe it.
    const headers = new Headers(response.headers);
    headers.delete("Content-Encoding");
    headers.delete("Content-Length");
    await cache.put(url, new Response(new Blob(chunks), { status: 200, headers }));
  }
  tell({ type: "summon-install", done: total, total });
}

async function tell(message) {
  const pages = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  for (const page of pages) page.postMessage(message);
}

self.addEventListener("message", (event) => {
  const data = event.data || {};
  const clientId = event.source ? event.source.id : "";
  if (data.type === "summon-claim") {
    // A page loaded past this worker (a hard reload) asks to be controlled: its requests
    // to the app can only come here.
    event.waitUntil(self.clients.claim());
    return;
  }
  if (data.type === "summon-ready") {
    for (const entry of ports) if (entry.clientId === clientId) entry.ready = true;
    return;
  }
  if (data.type !== "summon-port" || !event.ports[0]) return;
  // started: when that page began (ms since the epoch). After a restart, the pages offer
  // ports in no set order; sorted by it, "newest last" stays true of the pages, not of the
  // offers, so every request goes to the same tab's app, the newest.
  const started = Number(data.started) || Date.now();
  const entry = { port: event.ports[0], clientId, ready: Boolean(data.ready), started };
  entry.port.onmessage = (e) => {
    const resolve = waiters.get(e.data.id);
    if (resolve) {
      waiters.delete(e.data.id);
      resolve(e.data);
    }
  };
  ports.push(entry);
  ports.sort((a, b) => a.started - b.started);
  for (const waiter of portWaiters.splice(0)) waiter();
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (url.origin !== SCOPE.origin || !url.pathname.startsWith(SCOPE.pathname)) return;
  const rel = url.pathname.slice(SCOPE.pathname.length);
  if (rel.startsWith(RESERVED) || rel === SELF) {
    event.respondWith(fromCache(request));
  } else if (
    request.mode === "navigate" &&
    request.destination === "document" &&
    (request.method === "GET" || request.method === "HEAD")
  ) {
    event.respondWith(shell());
  } else {
    event.respondWith(toApp(request, "/" + rel + url.search));
  }
});

async function fromCache(request) {
  const hit = await caches.match(request, { cacheName: CACHE, ignoreSearch: true });
  return hit || fetch(request);
}

async function shell() {
  const hit = await caches.match(new URL(SHELL, SCOPE).href, { cacheName: CACHE });
  if (!hit) return fetch(new URL(SHELL, SCOPE).href);
  // The shell may be opened at any address in the scope: its own files are at the scope.
  const text = (await hit.text()).replace('<base href="./">', `<base href="${SCOPE.href}">`);
  return new Response(text, { status: 200, headers: hit.headers });
}

function plain(status, text) {
  return new Response(`summon: ${text}\n`, {
    status,
    headers: { "Content-Type": "text/plain; charset=utf-8", "X-Summon-Bridge": "1" },
  });
}

function within(promise, ms, why) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(why)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

async function pick() {
  // The newest page whose app is up; else the newest still starting (requests wait there).
  let starting = null;
  for (let i = ports.length - 1; i >= 0; i--) {
    if (!(await self.clients.get(ports[i].clientId))) {
      ports.splice(i, 1); // that page is gone, and its worker with it
    } else if (ports[i].ready) {
      return ports[i];
    } else if (!starting) {
      starting = ports[i];
    }
  }
  return starting;
}

function offers(count) {
  // Resolves once `count` ports are known.
  return new Promise((resolve) => {
    const check = () => (ports.length >= count ? resolve() : portWaiters.push(check));
    check();
  });
}

async function askPages() {
  // This worker was restarted (or replaced by a new export's): it has no ports. Every open
  // page offers one; the first offer ends the wait, the others get OFFERS_MS to arrive, so
  // the newest page is chosen, not the quickest to answer.
  const pages = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  for (const page of pages) page.postMessage({ type: "summon-need-port" });
  const why = "no open page of this site runs the app; open the site's address to start it";
  await within(offers(1), PORT_WAIT_MS, why);
  await within(offers(pages.length), OFFERS_MS, "").catch(() => {});
}

let asking = null; // one round of askPages for all the requests that found no port

async function appPort() {
  const found = await pick();
  if (found) return found;
  if (!asking) asking = askPages().finally(() => (asking = null));
  await asking;
  const chosen = await pick();
  if (!chosen) throw new Error("the page running the app was closed; open the site's address");
  return chosen;
}

class PageGone extends Error {}

function whileOpen(entry) {
  // Rejects with PageGone once the page of `entry` is closed or reloaded: its app's worker,
  // and any answer it owed, went with it. (A MessagePort says nothing when its other end
  // goes: without this, a request of another tab's waited ANSWER_MS for a 503.)
  let stopped = false;
  let timer;
  const promise = new Promise((_, reject) => {
    const check = async () => {
      if (stopped) return;
      if (await self.clients.get(entry.clientId)) {
        if (!stopped) timer = setTimeout(check, WATCH_MS);
        return;
      }
      const at = ports.indexOf(entry);
      if (at >= 0) ports.splice(at, 1);
      reject(new PageGone("the tab running the app was closed before it answered; send it again"));
    };
    timer = setTimeout(check, WATCH_MS);
  });
  promise.catch(() => {});
  return { promise, stop: () => ((stopped = true), clearTimeout(timer)) };
}

async function ask(message) {
  // The app's answer: from the chosen page, or, if that page goes first and the method is
  // safe to repeat, from the next one chosen.
  for (;;) {
    const entry = await appPort();
    message.id = nextId++;
    const reply = new Promise((resolve) => waiters.set(message.id, resolve));
    const open = whileOpen(entry);
    try {
      entry.port.postMessage(message);
      return await within(Promise.race([reply, open.promise]), ANSWER_MS, "the app did not answer");
    } catch (e) {
      if (!(e instanceof PageGone) || !RESEND.has(message.method)) throw e;
    } finally {
      open.stop();
      waiters.delete(message.id);
    }
  }
}

async function toApp(request, target) {
  const hasBody = request.method !== "GET" && request.method !== "HEAD";
  const message = {
    id: 0,
    method: request.method,
    target,
    headers: [...request.headers],
    body: hasBody ? await request.arrayBuffer() : null,
    host: SCOPE.host,
  };
  let answer;
  try {
    answer = await ask(message);
  } catch (e) {
    return plain(503, e.message);
  }
  if (answer.error) return plain(502, answer.error);
  if (answer.status < 200 || answer.status > 599) {
    return plain(502, `the app answered with status ${answer.status}, which a page cannot get`);
  }
  const headers = new Headers();
  for (const [name, value] of answer.headers) {
    try {
      headers.append(name, value);
    } catch (e) {
      // A field a Response may not carry: the browser would not have kept it either.
    }
  }
  const body = NULL_BODY.has(answer.status) || request.method === "HEAD" ? null : answer.body;
  try {
    return new Response(body, { status: answer.status, statusText: answer.reason, headers });
  } catch (e) {
    return new Response(body, { status: answer.status, headers }); // a reason fetch refuses
  }
}
