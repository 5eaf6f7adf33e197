// The app's worker, owned by the page shell: Pyodide, the app, and the bridge's JS half.
//
// Boot: load Pyodide from the site's own copy (the pruned stdlib; nothing from a CDN),
// unpack the app bundle at / (the image's paths), mount each of the image's volumes on
// IndexedDB (IDBFS) and load what it held, then start the app (summon_browser.boot).
// Requests: each MessagePort the page hands over carries fetches from the service worker;
// each is answered by the app over a new in-memory connection, and when the image has
// volumes, what the app wrote is saved to IndexedDB before the answer leaves, so a page that
// sees "saved" finds it there after a reload or a browser restart.
"use strict";

// Pyodide's event loop runs each step of each task as setTimeout(step, 0), which browsers
// clamp to 4 ms once such timeouts nest five deep: a request that crosses a dozen loop steps
// (the app's connection, its reads and writes) would wait ~4 ms at each. Zero-delay timeouts
// go through a MessageChannel instead: still a task of the event loop, never clamped.
const nativeSetTimeout = self.setTimeout.bind(self);
const nativeClearTimeout = self.clearTimeout.bind(self);
const zeroDelay = new Map(); // id -> run; ids are negative, never the browser's
let nextZeroDelay = -1;
const soon = new MessageChannel();
soon.port1.onmessage = (event) => {
  const run = zeroDelay.get(event.data);
  if (run) {
    zeroDelay.delete(event.data);
    run();
  }
};
self.setTimeout = (fn, delay, ...args) => {
  if (delay > 0 || typeof fn !== "function") return nativeSetTimeout(fn, delay, ...args);
  const id = nextZeroDelay--;
  zeroDelay.set(id, () => fn(...args));
  soon.port2.postMessage(id);
  return id;
};
self.clearTimeout = (id) => (zeroDelay.delete(id) ? undefined : nativeClearTimeout(id));

importScripts("pyodide/pyodide.js");

const post = (message) => self.postMessage(message);
let site = null;
let pyodide = null;
let app = null;
let saving = Promise.resolve();

// Counts the browser's crypto.getRandomValues calls, so selftest can show that Python's
// os.urandom draws from it. Installed before Pyodide starts, which looks it up then.
let randomCalls = 0;
const getRandomValues = self.crypto.getRandomValues.bind(self.crypto);
self.crypto.getRandomValues = (array) => {
  randomCalls += 1;
  return getRandomValues(array);
};

// The app's cookies (inpage/cookies.py keeps them, as a service worker cannot hand them to
// the browser), saved in the Cache API so that a reload or a browser restart keeps a session
// as the browser's own jar would. Under a key of this site's, so two sites of one origin
// keep their own; a cache not named summon-*, so a new export of the site keeps it too.
const COOKIE_CACHE = "app-cookies";
const cookieKey = new URL("cookies.json", self.location.href).href;

async function loadCookies() {
  try {
    const hit = self.caches && (await (await self.caches.open(COOKIE_CACHE)).match(cookieKey));
    return hit ? await hit.json() : [];
  } catch (e) {
    return []; // no Cache API (an insecure context) or a damaged save: start empty
  }
}

let cookieSaving = Promise.resolve();
function saveCookies() {
  const changed = app.saved_cookies();
  if (!changed) return cookieSaving;
  const rows = changed.toJs({ create_proxies: false });
  changed.destroy();
  const body = JSON.stringify(rows);
  cookieSaving = cookieSaving.then(async () => {
    try {
      if (self.caches) await (await self.caches.open(COOKIE_CACHE)).put(cookieKey, new Response(body));
    } catch (e) {
      post({ type: "stderr", line: `summon: the app's cookies were not saved: ${errorText(e)}` });
    }
  });
  return cookieSaving;
}

function errorText(e) {
  // A Python exception arrives as a PythonError whose message is the whole traceback.
  return String((e && e.message) || e).trim();
}

function syncfs(populate) {
  return new Promise((resolve, reject) => {
    pyodide.FS.syncfs(populate, (err) => (err ? reject(err) : resolve()));
  });
}

function persist() {
  // One syncfs at a time: Emscripten's IDBFS does not take overlapping ones.
  saving = saving.then(() => syncfs(false));
  return saving;
}

// The volumes are one IndexedDB per origin, and each tab runs its own copy of the app: two
// tabs saving their own copy of a volume would undo each other's writes. So one tab at a
// time holds them (a Web Lock, released when its page goes); another waits for it.
async function holdVolumes() {
  if (!self.navigator.locks) return false;
  const name = "summon-volumes";
  const held = (lock) => (lock ? new Promise(() => {}) : null); // kept as long as we live
  const free = await new Promise((resolve) => {
    self.navigator.locks.request(name, { ifAvailable: true }, (lock) => {
      resolve(Boolean(lock));
      return held(lock);
    });
  });
  if (free) return true;
  post({ type: "progress", text: "Waiting: the app is open in another tab of this browser" });
  await new Promise((resolve) => {
    self.navigator.locks.request(name, (lock) => {
      resolve();
      return held(lock);
    });
  });
  return true;
}

async function boot() {
  const t0 = performance.now();
  site = await (await fetch("site.json")).json();
  post({ type: "progress", text: `Starting Python (Pyodide ${site.pyodide})`, fraction: 0.6 });
  pyodide = await loadPyodide({
    indexURL: new URL("pyodide/", self.location.href).href,
    stdout: (line) => post({ type: "stdout", line }),
    stderr: (line) => post({ type: "stderr", line }),
  });
  post({ type: "progress", text: "Unpacking the app", fraction: 0.8 });
  const bundle = await (await fetch("app.zip")).arrayBuffer();
  pyodide.unpackArchive(bundle, "zip", { extractDir: "/" });
  let volumesHeld = false; // this tab is the volumes' one opener (a Web Lock)
  if (site.volumes.length) {
    volumesHeld = await holdVolumes();
    for (const path of site.volumes) {
      pyodide.FS.mkdirTree(path);
      pyodide.FS.mount(pyodide.FS.filesystems.IDBFS, {}, path);
    }
    await syncfs(true);
  }
  pyodide.runPython(`import sys\nif "${site.runtime}" not in sys.path: sys.path.insert(0, "${site.runtime}")`);
  post({ type: "progress", text: "Starting the app", fraction: 0.9 });
  app = pyodide.pyimport("summon_browser.boot").BrowserApp.callKwargs("/", {
    volumes_held: volumesHeld,
  });
  const cookies = pyodide.toPy(await loadCookies());
  app.load_cookies(cookies);
  cookies.destroy();
  await app.start();
  post({ type: "ready", name: app.name, port: app.port, ms: performance.now() - t0 });
}

const booted = boot();
booted.catch((e) => post({ type: "failed", error: errorText(e) }));

async function answer(port, request) {
  let reply;
  try {
    await booted;
    const body = request.body ? new Uint8Array(request.body) : null;
    const result = await app.exchange_for_js(
      request.method,
      request.target,
      request.headers,
      body,
      request.host,
    );
    const [status, reason, headers, data] = result.toJs();
    result.destroy();
    if (site.volumes.length) await persist();
    await saveCookies(); // before the answer: the next page load must find the session
    const buffer = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength
      ? data.buffer
      : data.slice().buffer;
    port.postMessage({ id: request.id, status, reason, headers, body: buffer }, [buffer]);
    return;
  } catch (e) {
    reply = { id: request.id, error: errorText(e) };
  }
  port.postMessage(reply);
}

async function selftest() {
  await booted;
  const before = randomCalls;
  const now = Date.now();
  const [seconds, bytes] = pyodide.runPython("import os, time\n(time.time(), len(os.urandom(16)))").toJs();
  return {
    urandomBytes: bytes,
    urandomUsedGetRandomValues: randomCalls > before,
    clockSkewMs: Math.abs(seconds * 1000 - now),
    volumes: site.volumes,
  };
}

self.addEventListener("message", (event) => {
  const data = event.data || {};
  if (data.type === "port" && event.ports[0]) {
    const port = event.ports[0];
    port.onmessage = (e) => answer(port, e.data);
  } else if (data.type === "persist") {
    booted.then(() => site.volumes.length && persist()).catch(() => {});
  } else if (data.type === "selftest") {
    selftest().then(
      (value) => post({ type: "reply", reply: data.reply, value }),
      (e) => post({ type: "reply", reply: data.reply, value: { error: errorText(e) } }),
    );
  }
});
