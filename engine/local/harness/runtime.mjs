// Shared runtime of the harness process: the toolchain's Convex libraries (imported once),
// pushed module sets (stored on disk and imported once per content hash, shared by every
// deployment that runs the same code), and creation of test-runtime instances.

import { AsyncLocalStorage } from "node:async_hooks";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

import { wrapCursors } from "./cursors.mjs";
import { convexError } from "./errors.mjs";
import { installIds } from "./ids.mjs";

// The test runtime keeps its database inside an AsyncLocalStorage store and offers no
// handle on it. Every call it makes enters that store through `run`, so while a capture
// is armed the store that looks like its global (components + transaction manager) is
// recorded. This lets the harness move documents (ids, creation times) between runtime
// instances when code changes, and persist them.
let captureSlot = null;
const originalRun = AsyncLocalStorage.prototype.run;
AsyncLocalStorage.prototype.run = function run(store, callback, ...args) {
  if (
    captureSlot !== null &&
    store !== null &&
    typeof store === "object" &&
    "components" in store &&
    "transactionManager" in store
  ) {
    captureSlot.value = store;
  }
  return originalRun.call(this, store, callback, ...args);
};

function exportTarget(entry) {
  if (typeof entry === "string") return entry;
  if (entry && typeof entry === "object") {
    return exportTarget(entry.import ?? entry.default ?? entry.node);
  }
  return null;
}

/** Resolves the ESM entry of `pkg` + `subpath` inside the toolchain's node_modules. */
function resolveEsm(toolchain, pkg, subpath) {
  const root = path.join(toolchain, "node_modules", pkg);
  const manifest = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
  let target = null;
  if (manifest.exports) {
    const key = subpath ? `./${subpath}` : ".";
    const entry = typeof manifest.exports === "string" && key === "." ? manifest.exports : manifest.exports[key];
    target = exportTarget(entry);
  }
  if (!target) target = manifest.module ?? manifest.main ?? "index.js";
  return pathToFileURL(path.join(root, target)).href;
}

/** Imports the Convex libraries once from the toolchain (ESM ignores NODE_PATH). */
export async function loadToolchain(toolchain) {
  const values = await import(resolveEsm(toolchain, "convex", "values"));
  const server = await import(resolveEsm(toolchain, "convex", "server"));
  const convexTestUrl = resolveEsm(toolchain, "convex-test", "");
  const convexTestModule = await import(convexTestUrl);
  await convexLimitMessages(new URL("./transactionMetrics.js", convexTestUrl).href);
  return {
    jsonToConvex: values.jsonToConvex,
    convexToJson: values.convexToJson,
    makeFunctionReference: server.makeFunctionReference,
    convexTest: convexTestModule.convexTest,
  };
}

/**
 * Makes the test runtime's transaction limits fail with Convex's messages (errors.mjs): its
 * tracker checks the same limits (documents and bytes, read and written, index ranges) but
 * words them its own way. The check that failed is read back from the tracker's counters.
 */
async function convexLimitMessages(trackerUrl) {
  let Tracker;
  try {
    ({ TransactionMetricsTracker: Tracker } = await import(trackerUrl));
  } catch {
    return; // an older runtime without the tracker enforces no limits to reword
  }
  const proto = Tracker?.prototype;
  if (!proto || proto.__convexMessages) return;
  proto.__convexMessages = true;
  const reword = (method, pick) => {
    const original = proto[method];
    if (typeof original !== "function") return;
    proto[method] = function tracked(...args) {
      try {
        return original.apply(this, args);
      } catch (err) {
        const layer = typeof this._current === "function" ? this._current() : undefined;
        const replacement = layer ? pick(layer.metrics, layer.limits) : null;
        throw replacement ?? err;
      }
    };
  };
  // Counts are checked before bytes, in the backend's order.
  reword("trackRead", (m, l) =>
    m.documentsRead > l.documentsRead
      ? convexError("TooManyDocumentsRead", l.documentsRead)
      : m.bytesRead > l.bytesRead
        ? convexError("TooManyBytesRead", l.bytesRead)
        : null,
  );
  reword("trackWrite", (m, l) =>
    m.documentsWritten > l.documentsWritten
      ? convexError("TooManyWrites", l.documentsWritten)
      : m.bytesWritten > l.bytesWritten
        ? convexError("TooManyBytesWritten", l.bytesWritten)
        : null,
  );
  reword("trackIndexRange", (m, l) =>
    m.databaseQueries > l.databaseQueries ? convexError("TooManyReads", l.databaseQueries) : null,
  );
}

/** sha256 hex of source + source map: the hash the CLI compares module by module. */
export function moduleHash(source, sourceMap) {
  return createHash("sha256").update(source).update(sourceMap || "").digest("hex");
}

function safeRelative(modulePath) {
  const normal = path.posix.normalize(modulePath);
  if (
    typeof modulePath !== "string" ||
    modulePath.length === 0 ||
    normal.startsWith("..") ||
    path.posix.isAbsolute(normal) ||
    normal.includes("\0")
  ) {
    throw new Error(`invalid module path ${JSON.stringify(modulePath)}`);
  }
  return normal;
}

/**
 * Pushed code lives in `<root>/<set hash>/`, one folder per distinct module set, written
 * once and never changed (Node caches ESM by URL, so a new set needs a new folder).
 */
export class ModuleSets {
  constructor(root, toolchain, lib) {
    this.root = root;
    this.lib = lib;
    this.loaded = new Map(); // set hash -> Promise<LoadedSet>
    fs.mkdirSync(root, { recursive: true });
    // Bare imports from node-environment bundles resolve through this link.
    const link = path.join(root, "node_modules");
    if (!fs.existsSync(link)) {
      try {
        fs.symlinkSync(path.join(toolchain, "node_modules"), link, "dir");
      } catch {
        // Best effort: only node-environment modules with external imports need it.
      }
    }
  }

  /** Identity of a module set: its modules' (path, environment, hash) and its schema. */
  static setHash(entries, schemaPath) {
    const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const h = createHash("sha256");
    h.update(JSON.stringify({ schema: schemaPath, modules: sorted.map((e) => [e.path, e.environment, e.hash]) }));
    return h.digest("hex").slice(0, 32);
  }

  dir(setHash) {
    return path.join(this.root, setHash);
  }

  manifest(setHash) {
    return JSON.parse(fs.readFileSync(path.join(this.dir(setHash), "manifest.json"), "utf8"));
  }

  /** Source and source map of one stored module (for modules the CLI reports unchanged). */
  readModule(setHash, modulePath) {
    const file = path.join(this.dir(setHash), safeRelative(modulePath));
    const source = fs.readFileSync(file, "utf8");
    const mapFile = `${file}.map.txt`;
    const sourceMap = fs.existsSync(mapFile) ? fs.readFileSync(mapFile, "utf8") : undefined;
    return { source, sourceMap };
  }

  /**
   * Stores a module set. `modules`: [{path, source, sourceMap, environment}];
   * `schema`: the same shape or null. Returns the set hash.
   */
  store(modules, schema) {
    const entries = modules.map((m) => ({
      path: safeRelative(m.path),
      environment: m.environment ?? "isolate",
      hash: moduleHash(m.source, m.sourceMap),
    }));
    const schemaPath = schema ? safeRelative(schema.path) : null;
    const all = schema ? [...modules, schema] : modules;
    const setHash = ModuleSets.setHash(entries, schemaPath && `${schemaPath}:${moduleHash(schema.source, schema.sourceMap)}`);
    const target = this.dir(setHash);
    if (fs.existsSync(target)) return setHash;
    const tmp = path.join(this.root, `.tmp-${setHash}-${randomBytes(4).toString("hex")}`);
    fs.mkdirSync(tmp, { recursive: true });
    for (const m of all) {
      const file = path.join(tmp, safeRelative(m.path));
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, m.source);
      if (m.sourceMap) fs.writeFileSync(`${file}.map.txt`, m.sourceMap);
    }
    fs.writeFileSync(path.join(tmp, "package.json"), '{"type":"module"}\n');
    fs.writeFileSync(
      path.join(tmp, "manifest.json"),
      JSON.stringify({ modules: entries, schema: schemaPath }, null, 1),
    );
    try {
      fs.renameSync(tmp, target);
    } catch (err) {
      fs.rmSync(tmp, { recursive: true, force: true });
      if (!fs.existsSync(target)) throw err;
    }
    return setHash;
  }

  /** Imports every module of a set once; shared by all deployments running it. */
  load(setHash) {
    let pending = this.loaded.get(setHash);
    if (!pending) {
      pending = this._import(setHash);
      this.loaded.set(setHash, pending);
      pending.catch(() => this.loaded.delete(setHash));
    }
    return pending;
  }

  async _import(setHash) {
    const dir = this.dir(setHash);
    const manifest = this.manifest(setHash);
    const namespaces = {};
    for (const entry of manifest.modules) {
      if (entry.path.startsWith("_deps/")) continue;
      try {
        namespaces[entry.path] = await import(pathToFileURL(path.join(dir, entry.path)).href);
      } catch (err) {
        throw new Error(`loading module ${entry.path} failed: ${err?.message ?? err}`);
      }
    }
    let schemaDef = null;
    let schemaJson = null;
    if (manifest.schema) {
      let ns;
      try {
        ns = await import(pathToFileURL(path.join(dir, manifest.schema)).href);
      } catch (err) {
        throw new Error(`loading the schema (${manifest.schema}) failed: ${err?.message ?? err}`);
      }
      schemaDef = ns.default;
      if (!schemaDef || typeof schemaDef.export !== "function") {
        throw new Error(`${manifest.schema} has no default export made by defineSchema()`);
      }
      schemaJson = JSON.parse(schemaDef.export());
    }
    const testModules = { "/convex/_generated/api.js": async () => ({}) };
    for (const [modulePath, ns] of Object.entries(namespaces)) {
      testModules[`/convex/${modulePath}`] = async () => ns;
    }
    return { setHash, manifest, namespaces, schemaDef, schemaJson, testModules };
  }
}

/** The module set of a deployment that has never been pushed to. */
export const EMPTY_SET = {
  setHash: null,
  manifest: { modules: [], schema: null },
  namespaces: {},
  schemaDef: null,
  schemaJson: null,
  testModules: { "/convex/_generated/api.js": async () => ({}) },
};

/** Creates a test-runtime instance and returns it with its root database object. */
export async function createInstance(lib, loadedSet, transactionLimits) {
  const t = lib.convexTest({
    schema: loadedSet.schemaDef ?? undefined,
    modules: loadedSet.testModules,
    transactionLimits,
  });
  // `run` enters the runtime's store synchronously, so the capture sees it before returning.
  const slot = {};
  captureSlot = slot;
  let pending;
  try {
    pending = t.run(async () => null);
  } finally {
    captureSlot = null;
  }
  await pending;
  const captured = slot.value;
  if (!captured) throw new Error("could not reach the test runtime's database");
  const db = captured.components[""]?.db;
  if (!db || typeof db._documents !== "object") {
    throw new Error("the test runtime's database has an unexpected shape");
  }
  wrapCursors(db, lib);
  return installIds({ t, global: captured, db });
}
