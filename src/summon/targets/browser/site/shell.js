// The page shell: shows progress while Python starts, then hands the window to the app.
//
// It registers the site's service worker, waits until that worker controls the page, starts
// the app's worker (Pyodide and the app; _summon/worker.js) and gives each side one end of a
// MessageChannel, over which the service worker forwards the app's requests. Once the app
// listens, the shell opens the page's own address in a frame that fills the window: that
// document is the app's page, served by the app, and links and forms in it navigate the
// frame as they would against a server. The shell stays as the frame's parent because it
// owns the worker: a top-level navigation would end the worker and Python with it. The
// address bar and the title follow the frame.
//
// Console lines from the app go to the browser console; errors (the app's stderr, a failed
// start) also to a panel on the page. window.summon is for tests and the curious: its state
// is "ready" once the app's page has loaded in the frame. Not as soon as the app listens: the
// frame's window is then still the initial about:blank, which no service worker controls
// (its fetches went to the static server, a 404) and which the frame's navigation replaces
// (a fetch it had begun failed).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const loading = $("summon-loading");
  const step = $("summon-step");
  const bar = $("summon-progress");
  const panel = $("summon-errors");
  const panelText = $("summon-errors-text");
  const summon = {
    state: "loading",
    error: "",
    log: [],
    errors: [],
    started: performance.now(),
    readyAt: 0, // performance.now() when the app listened
    appLoadedAt: 0, // when its first page had loaded in the frame
    worker: null,
    appUp: false, // the app listens: the service worker may send it requests
    selftest: () => ask({ type: "selftest" }),
  };
  window.summon = summon;
  const replies = new Map();
  let nextReply = 1;

  function say(text, fraction) {
    step.textContent = text;
    if (fraction === undefined) bar.removeAttribute("value");
    else bar.value = Math.round(fraction * 100);
  }

  function showError(text) {
    summon.errors.push(text);
    panel.hidden = false;
    panelText.textContent += text + "\n";
  }

  function fail(text) {
    summon.state = "failed";
    summon.error = text;
    loading.classList.add("failed");
    loading.hidden = false;
    say("The app could not start.");
    console.error(text);
    showError(text);
  }

  $("summon-errors-close").addEventListener("click", () => {
    panel.hidden = true;
  });

  function ask(message) {
    const id = nextReply++;
    return new Promise((resolve) => {
      replies.set(id, resolve);
      summon.worker.postMessage({ ...message, reply: id });
    });
  }

  function givePort() {
    const channel = new MessageChannel();
    summon.worker.postMessage({ type: "port" }, [channel.port1]);
    navigator.serviceWorker.controller.postMessage(
      { type: "summon-port", ready: summon.appUp, started: performance.timeOrigin },
      [channel.port2],
    );
  }

  function fromServiceWorker(event) {
    const data = event.data || {};
    if (data.type === "summon-need-port" && summon.worker && summon.state !== "failed") {
      givePort();
    } else if (
      data.type === "summon-install-failed" &&
      summon.state === "loading" &&
      !navigator.serviceWorker.controller
    ) {
      // This page waits for that worker (a first visit): it would have waited for ever.
      // (A page that another worker controls goes on with it: only an update failed.)
      const why = `the site's files could not be downloaded (${data.error})`;
      fail(`${why}; reload the page to try again`);
    } else if (data.type === "summon-install" && summon.state === "loading") {
      const mb = (n) => (n / 1e6).toFixed(1);
      say(`Downloading the site: ${mb(data.done)} of ${mb(data.total)} MB`, data.done / data.total / 2);
    }
  }

  function fromApp(event) {
    const data = event.data || {};
    if (data.type === "progress") {
      say(data.text, data.fraction);
    } else if (data.type === "stdout") {
      summon.log.push(data.line);
      console.log(data.line);
    } else if (data.type === "stderr") {
      summon.log.push(data.line);
      console.error(data.line);
      showError(data.line);
    } else if (data.type === "ready") {
      showApp(data);
    } else if (data.type === "failed") {
      fail(data.error);
    } else if (data.type === "reply" && replies.has(data.reply)) {
      replies.get(data.reply)(data.value);
      replies.delete(data.reply);
    }
  }

  function showApp(ready) {
    summon.appUp = true;
    // Of several tabs, the service worker sends requests to one whose app is up.
    navigator.serviceWorker.controller.postMessage({ type: "summon-ready" });
    summon.readyAt = performance.now();
    summon.app = ready;
    say("Opening the app", 1);
    const frame = document.createElement("iframe");
    frame.id = "summon-app";
    frame.title = ready.name;
    frame.addEventListener("load", () => {
      if (!summon.appLoadedAt) summon.appLoadedAt = performance.now();
      if (summon.state === "loading") summon.state = "ready";
      loading.hidden = true;
      try {
        const inner = frame.contentWindow;
        document.title = inner.document.title || ready.name;
        if (inner.location.href !== location.href) history.replaceState(null, "", inner.location.href);
      } catch (e) {
        // The app sent its frame elsewhere (another origin): leave the address as it is.
      }
    });
    frame.src = location.href;
    document.body.appendChild(frame);
  }

  async function main() {
    if (!("serviceWorker" in navigator)) {
      fail(
        "This browser offers no service workers here: open the site over https, or at " +
          "http://localhost or http://127.0.0.1.",
      );
      return;
    }
    navigator.serviceWorker.addEventListener("message", fromServiceWorker);
    say("Installing the site's service worker");
    await navigator.serviceWorker.register("_summon-sw.js", { scope: "./" });
    if (!navigator.serviceWorker.controller) {
      const controlled = new Promise((resolve) => {
        navigator.serviceWorker.addEventListener("controllerchange", resolve, { once: true });
      });
      const registration = await navigator.serviceWorker.ready;
      if (!navigator.serviceWorker.controller) {
        // Active already, yet not this page's: a hard reload (Shift-reload) loads a page
        // past its service worker, which takes it only when asked (clients.claim).
        registration.active.postMessage({ type: "summon-claim" });
      }
      await controlled;
    }
    say("Starting Python", 0.5);
    summon.worker = new Worker("_summon/worker.js");
    summon.worker.addEventListener("message", fromApp);
    summon.worker.addEventListener("error", (e) => fail(`the app's worker failed: ${e.message}`));
    givePort();
  }

  // What the app wrote outside a request (a background task) is saved when the tab is
  // hidden or left, as well as after each request (worker.js).
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden" && summon.worker) {
      summon.worker.postMessage({ type: "persist" });
    }
  });

  main().catch((e) => fail(`the page could not start the app: ${e.message || e}`));
})();
