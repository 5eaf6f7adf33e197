// The export's trace, run under Node: boot the app in Pyodide with Pyodide's whole stdlib,
// answer one GET /, and print (on stdout, as JSON) every module loaded by then.
//
//   node trace.js PYODIDE_DIR BUNDLE_ZIP RUNTIME_DIR
//
// summon runs it under Node's permission model (reads of these two paths only; no writes,
// no child processes, no workers), since it runs an image's code on the host. Emscripten's
// file system asks process.binding for the open() flags at start, which that model forbids:
// it gets the same constants from fs instead. The app's own output goes to stderr, so that
// stdout holds the JSON alone.
"use strict";

const fs = require("fs");
const path = require("path");

const [pyodideDir, bundlePath, runtimeDir] = process.argv.slice(2);
const constants = fs.constants;
process.binding = (name) => {
  if (name === "constants") return { fs: constants };
  throw new Error(`process.binding(${name}) is not available to the trace`);
};

const { loadPyodide } = require(path.join(pyodideDir, "pyodide.js"));

(async () => {
  const pyodide = await loadPyodide({
    indexURL: pyodideDir + path.sep,
    stdout: (line) => process.stderr.write(`app: ${line}\n`),
    stderr: (line) => process.stderr.write(`app: ${line}\n`),
  });
  const bundle = fs.readFileSync(bundlePath); // a Buffer, which Pyodide does not take as such
  const bytes = new Uint8Array(bundle.buffer, bundle.byteOffset, bundle.byteLength);
  pyodide.unpackArchive(bytes, "zip", { extractDir: "/" });
  pyodide.runPython(`import sys\nsys.path.insert(0, ${JSON.stringify(runtimeDir)})`);
  const trace = pyodide.pyimport("summon_browser.trace");
  const result = await trace.run("/");
  process.stdout.write(result, () => process.exit(0));
})().catch((e) => {
  process.stderr.write(`trace failed: ${(e && e.stack) || e}\n`);
  process.exit(1);
});
