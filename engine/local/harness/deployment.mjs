// One local deployment: its pushed code and schema, its documents (in a test-runtime
// instance created lazily, persisted through DocumentStore), the push protocol the CLI
// speaks, and function execution. Deployments live in worker threads (worker.mjs); the
// main thread reaches them through messages (shards.mjs).

import { AsyncLocalStorage } from "node:async_hooks";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";

import { admitCall, checkResult } from "./admission.mjs";
import { HttpError } from "./errors.mjs";
import { bindTableNumbers, tableOfId } from "./ids.mjs";
import { EMPTY_SET, createInstance } from "./runtime.mjs";
import { checkPushedSchema } from "./schema_gate.mjs";
import { DocumentStore, writeAtomic } from "./store.mjs";
import { installWriteChecks, validateSchemaChange } from "./validator.mjs";

export { HttpError };

const DRAIN_TIMEOUT_MS = 30_000;

/**
 * The call being executed, through every await of it: `{tag, onStart}`. Commits are tagged
 * with `tag`; `onStart(kind, environment)` is called when the function starts running (the
 * main thread's time limit starts then).
 */
export const callContext = new AsyncLocalStorage();

function parseFunctionPath(fnPath) {
  if (typeof fnPath !== "string" || fnPath.length === 0) {
    throw new HttpError(400, "BadFunctionPath", "the request has no function `path`");
  }
  let [modulePart, exportName] = fnPath.includes(":") ? fnPath.split(":", 2) : [fnPath, "default"];
  modulePart = modulePart.replace(/\.js$/, "");
  if (!modulePart || !exportName) {
    throw new HttpError(400, "BadFunctionPath", `invalid function path ${JSON.stringify(fnPath)}`);
  }
  return { moduleFile: `${modulePart}.js`, canonical: `${modulePart}:${exportName}`, exportName };
}

function functionKind(fn) {
  if (!fn || typeof fn !== "function" && typeof fn !== "object") return null;
  if (fn.isQuery) return "query";
  if (fn.isMutation) return "mutation";
  if (fn.isAction) return "action";
  return null;
}

const KIND_TITLE = { query: "Query", mutation: "Mutation", action: "Action" };

function indexList(schema) {
  const out = new Map();
  for (const table of schema?.tables ?? []) {
    for (const idx of table.indexes ?? []) {
      out.set(`${table.tableName}.${idx.indexDescriptor}`, { type: "database", fields: idx.fields });
    }
    for (const idx of table.searchIndexes ?? []) {
      out.set(`${table.tableName}.${idx.indexDescriptor}`, {
        type: "search", searchField: idx.searchField, filterFields: idx.filterFields ?? [],
      });
    }
    for (const idx of table.vectorIndexes ?? []) {
      out.set(`${table.tableName}.${idx.indexDescriptor}`, {
        type: "vector", vectorField: idx.vectorField, dimensions: idx.dimensions, filterFields: idx.filterFields ?? [],
      });
    }
  }
  return out;
}

function indexDiff(oldSchema, newSchema) {
  const before = indexList(oldSchema);
  const after = indexList(newSchema);
  const added = [];
  const removed = [];
  for (const [name, cfg] of after) {
    const prev = before.get(name);
    if (!prev || JSON.stringify(prev) !== JSON.stringify(cfg)) added.push({ name, ...cfg });
  }
  for (const [name, cfg] of before) {
    const next = after.get(name);
    if (!next || JSON.stringify(next) !== JSON.stringify(cfg)) removed.push({ name, ...cfg });
  }
  return { added_indexes: added, removed_indexes: removed, enabled_indexes: [], disabled_indexes: [] };
}

export class Deployment {
  /** `ctx`: {lib, sets, dataDir, transactionLimits}; `spec`: {name, port, adminKey}. */
  constructor(ctx, spec) {
    this.ctx = ctx;
    this.name = spec.name;
    this.port = spec.port;
    this.adminKey = spec.adminKey;
    this.dir = path.join(ctx.dataDir, "deployments", spec.name);
    this.stateFile = path.join(this.dir, "state.json");
    this.store = new DocumentStore(this.dir, ctx.lib);
    this.state = fs.existsSync(this.stateFile)
      ? JSON.parse(fs.readFileSync(this.stateFile, "utf8"))
      : { setHash: null, schema: null, pushes: 0, pushedAt: null };
    this.fault = { mode: "none", delayMs: 0 };
    this.instance = null;
    this.loadedSet = null;
    this._ready = null;
    this.pending = null;
    this.inflight = 0;
    this.gate = null;
    this._onDrain = null;
    this.writeSeq = 0;
    this._compactTimer = null;
  }

  // ---- runtime instance and durability -------------------------------------------------

  /** Creates the test-runtime instance on first use, loading stored documents. */
  ensure() {
    if (!this._ready) {
      this._ready = (async () => {
        const loaded = this.state.setHash ? await this.ctx.sets.load(this.state.setHash) : EMPTY_SET;
        const inst = await createInstance(this.ctx.lib, loaded, this.ctx.transactionLimits);
        const data = this.store.load();
        const db = inst.db;
        bindTableNumbers(db, this.dir);
        for (const [id, doc] of Object.entries(data.documents)) {
          db._documents[id] = doc;
          const table = tableOfId(db, id);
          if (!db._tableIds.has(table)) db._tableIds.set(table, new Set());
          db._tableIds.get(table).add(id);
        }
        db._nextDocId = Math.max(db._nextDocId, data.nextDocId);
        db._lastCreationTime = Math.max(db._lastCreationTime, data.lastCreationTime);
        this._hook(inst);
        this.instance = inst;
        this.loadedSet = loaded;
        return inst;
      })();
      this._ready.catch(() => {
        this._ready = null;
      });
    }
    return this._ready;
  }

  /** Persists every committed write set and validates writes with the harness's validator. */
  _hook(inst) {
    const db = inst.db;
    const commit = db.commit.bind(db);
    db.commit = (commitTs) => {
      const topLevel = db._writes.length === 1;
      const ids = topLevel ? Object.keys(db._writes[0]) : [];
      commit(commitTs);
      if (ids.length > 0) {
        this.writeSeq += 1;
        const writes = ids.map((id) => [id, db._documents[id] ?? null]);
        const tag = callContext.getStore()?.tag ?? null;
        if (this.store.append(writes, db._nextDocId, db._lastCreationTime, tag)) this._scheduleCompact();
      }
    };
    installWriteChecks(db, () => this.activeSchema(), this.ctx.lib.jsonToConvex, (id) => tableOfId(db, id));
  }

  activeSchema() {
    return this.loadedSet ? this.loadedSet.schemaJson : this.state.schema;
  }

  _scheduleCompact() {
    if (this._compactTimer) return;
    this._compactTimer = setTimeout(() => {
      this._compactTimer = null;
      this.flush();
    }, 200);
  }

  /** Folds the write log into the snapshot (also called at shutdown). */
  flush() {
    if (!this.instance) return;
    const db = this.instance.db;
    this.store.compact(db._documents, db._nextDocId, db._lastCreationTime);
  }

  // ---- in-flight calls and exclusive sections -------------------------------------------

  /**
   * Queries and mutations run one at a time per worker (`ctx.serial`), as an isolate runs
   * one function at a time: their time limit starts when their turn comes, so waiting
   * behind other deployments' functions never counts against it, and interleaving cannot
   * make a function slower than it is alone. The CPU is the bottleneck either way.
   */
  async _turn() {
    const previous = this.ctx.serial ?? Promise.resolve();
    let release;
    this.ctx.serial = new Promise((resolve) => {
      release = resolve;
    });
    await previous;
    return release;
  }

  async _enter() {
    while (this.gate) await this.gate;
    this.inflight += 1;
  }

  _leave() {
    this.inflight -= 1;
    if (this.inflight === 0 && this._onDrain) this._onDrain();
  }

  /** Runs `fn` with no function call in flight (new calls wait), e.g. to switch code. */
  async _exclusive(fn) {
    while (this.gate) await this.gate;
    let release;
    this.gate = new Promise((resolve) => {
      release = resolve;
    });
    try {
      if (this.inflight > 0) {
        await new Promise((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new HttpError(503, "PushTimeout", "function calls still running after 30 s; push again")),
            DRAIN_TIMEOUT_MS,
          );
          this._onDrain = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      this._onDrain = null;
      return await fn();
    } finally {
      this._onDrain = null;
      this.gate = null;
      release();
    }
  }

  // ---- documents ------------------------------------------------------------------------

  docsByTable() {
    const db = this.instance.db;
    const out = new Map();
    for (const [table, ids] of db._tableIds) {
      const docs = [];
      for (const id of ids) if (db._documents[id]) docs.push(db._documents[id]);
      if (docs.length) out.set(table, docs);
    }
    return out;
  }

  /** All documents as Convex JSON, grouped by table (for tests and inspection). */
  async exportDocuments(onlyTable) {
    await this.ensure();
    const { convexToJson } = this.ctx.lib;
    const out = {};
    for (const [table, docs] of this.docsByTable()) {
      if (onlyTable && table !== onlyTable) continue;
      out[table] = docs.map((d) => convexToJson(d));
    }
    return out;
  }

  _validateAgainst(newSchema) {
    const old = this.activeSchema();
    if (JSON.stringify(old) === JSON.stringify(newSchema)) return null;
    const db = this.instance.db;
    return validateSchemaChange(old, newSchema, this.docsByTable(), this.ctx.lib.jsonToConvex, (id) => tableOfId(db, id));
  }

  // ---- push protocol --------------------------------------------------------------------

  configHashes() {
    const manifest = this.state.setHash ? this.ctx.sets.manifest(this.state.setHash) : { modules: [] };
    return {
      config: { functions: "convex/", authInfo: [] },
      moduleHashes: manifest.modules.map((m) => ({ path: m.path, hash: m.hash, environment: m.environment })),
      nodeDependencies: [],
      udfServerVersion: this.state.udfServerVersion ?? null,
    };
  }

  async startPush(body) {
    const app = body.appDefinition;
    if (!app || !Array.isArray(app.changedModules)) {
      throw new HttpError(400, "InvalidPush", "the push request has no appDefinition.changedModules");
    }
    if ((body.componentDefinitions ?? []).length > 0) {
      throw new HttpError(400, "ComponentsNotSupported", "components are not supported by local deployments");
    }
    const { sets } = this.ctx;
    const current = this.state.setHash ? sets.manifest(this.state.setHash) : { modules: [] };
    const modules = [...app.changedModules];
    for (const unchanged of app.unchangedModuleHashes ?? []) {
      const have = current.modules.find((m) => m.path === unchanged.path && m.hash === unchanged.sha256);
      if (!have) {
        throw new HttpError(
          400,
          "ModuleNotFound",
          `module ${unchanged.path} was reported unchanged but this deployment does not hold it; push with --push-all-modules`,
        );
      }
      modules.push({ path: unchanged.path, environment: have.environment, ...sets.readModule(this.state.setHash, unchanged.path) });
    }
    let setHash;
    let loaded;
    try {
      setHash = sets.store(modules, app.schema ?? null);
      loaded = await sets.load(setHash);
    } catch (err) {
      throw new HttpError(400, "InvalidModules", `Loading the pushed modules encountered the following error:\n${err?.message ?? err}`);
    }
    await this.ensure();
    const refusal = await checkPushedSchema(loaded.schemaJson, [
      ...this.docsByTable().keys(),
      ...(this.activeSchema()?.tables ?? []).map((t) => t.tableName),
    ]);
    if (refusal) throw new HttpError(400, refusal.code, refusal.message);
    const failure = this._validateAgainst(loaded.schemaJson);
    const pushId = randomBytes(12).toString("hex");
    this.pending = { pushId, setHash, loaded, failure, seq: this.writeSeq, udfServerVersion: app.udfServerVersion ?? null };
    const authModule = loaded.namespaces["auth.config.js"]?.default;
    return {
      environmentVariables: {},
      externalDepsId: null,
      componentDefinitionPackages: {},
      appAuth: Array.isArray(authModule?.providers) ? authModule.providers : [],
      analysis: {
        "": {
          definition: {
            path: "",
            definitionType: { type: "app" },
            childComponents: [],
            httpMounts: {},
            exports: { type: "branch", branch: [] },
          },
          functions: {},
          udfConfig: { serverVersion: app.udfServerVersion ?? "" },
        },
      },
      app: {
        definitionPath: "",
        componentPath: "",
        args: {},
        childComponents: {},
        httpRoutes: { httpModuleRoutes: null, mounts: [] },
        exports: {},
      },
      schemaChange: {
        allocatedComponentIds: {},
        schemaIds: { "": pushId },
        indexDiffs: { "": indexDiff(this.activeSchema(), loaded.schemaJson) },
      },
    };
  }

  waitForSchema(body) {
    const id = body?.schemaChange?.schemaIds?.[""];
    const p = this.pending;
    if (!p || p.pushId !== id) return { type: "raceDetected" };
    if (p.failure) {
      return { type: "failed", error: p.failure.error, tableName: p.failure.tableName, componentPath: "" };
    }
    return { type: "complete" };
  }

  async finishPush(body) {
    const id = body?.startPush?.schemaChange?.schemaIds?.[""];
    const p = this.pending;
    if (!p || p.pushId !== id) {
      throw new HttpError(400, "RaceDetected", "Schema was overwritten by another push.");
    }
    if (p.failure) throw new HttpError(400, "SchemaValidationFailed", p.failure.error);
    const oldSchema = this.activeSchema();
    const oldModules = new Set((this.loadedSet?.manifest.modules ?? []).map((m) => m.path));
    const newModules = new Set(p.loaded.manifest.modules.map((m) => m.path));
    const diff = {
      authDiff: { added: [], removed: [] },
      definitionDiffs: {},
      componentDiffs: {
        "": {
          diffType: { type: "modify" },
          moduleDiff: {
            added: [...newModules].filter((m) => !oldModules.has(m)),
            removed: [...oldModules].filter((m) => !newModules.has(m)),
          },
          udfConfigDiff: null,
          cronDiff: { added: [], updated: [], deleted: [] },
          indexDiff: indexDiff(oldSchema, p.loaded.schemaJson),
          schemaDiff: {
            previous_schema: oldSchema ? JSON.stringify(oldSchema) : null,
            next_schema: p.loaded.schemaJson ? JSON.stringify(p.loaded.schemaJson) : null,
          },
        },
      },
    };
    if (body.dryRun) return diff;
    await this._exclusive(async () => {
      if (this.pending !== p) throw new HttpError(400, "RaceDetected", "Schema was overwritten by another push.");
      if (this.writeSeq !== p.seq) {
        const failure = this._validateAgainst(p.loaded.schemaJson);
        if (failure) {
          this.pending = null;
          throw new HttpError(400, "SchemaValidationFailed", failure.error);
        }
      }
      await this._activate(p);
    });
    return diff;
  }

  async _activate(p) {
    const inst = await createInstance(this.ctx.lib, p.loaded, this.ctx.transactionLimits);
    const old = this.instance;
    for (const field of ["_documents", "_tableIds", "_storage", "_nextDocId", "_lastCreationTime", "_tableNumbers"]) {
      inst.db[field] = old.db[field];
    }
    inst.global.transactionManager._lastCommitTs = old.global.transactionManager._lastCommitTs;
    this._hook(inst);
    this.instance = inst;
    this.loadedSet = p.loaded;
    this._ready = Promise.resolve(inst);
    this.pending = null;
    this.state = {
      setHash: p.setHash,
      schema: p.loaded.schemaJson,
      pushes: (this.state.pushes ?? 0) + 1,
      pushedAt: new Date().toISOString(),
      udfServerVersion: p.udfServerVersion,
    };
    fs.mkdirSync(this.dir, { recursive: true });
    writeAtomic(this.stateFile, JSON.stringify(this.state));
  }

  // ---- function execution ---------------------------------------------------------------

  /**
   * Runs a function. `kind` is "query" | "mutation" | "action" | null (any). Returns the
   * HTTP API body: `{status:"success", value}` or `{status:"error", errorMessage, errorData?}`.
   */
  async call(kind, fnPath, argsJson, format, caller) {
    const { lib } = this.ctx;
    const { moduleFile, canonical, exportName } = parseFunctionPath(fnPath);
    await this._enter();
    try {
      const inst = await this.ensure();
      const fn = this.loadedSet.namespaces[moduleFile]?.[exportName];
      const actual = functionKind(fn);
      if (!actual) {
        return {
          status: "error",
          errorMessage: `Could not find function for '${canonical}'. Did you forget to run \`npx convex deploy\`?`,
        };
      }
      if (kind && kind !== actual) {
        return {
          status: "error",
          errorMessage: `Trying to execute ${canonical} as ${KIND_TITLE[kind]}, but it is defined as ${KIND_TITLE[actual]}.`,
        };
      }
      let args = argsJson ?? {};
      if (Array.isArray(args)) args = args[0] ?? {};
      let decoded;
      try {
        decoded = lib.jsonToConvex(args);
      } catch (err) {
        return { status: "error", errorMessage: `Invalid arguments for ${canonical}: ${err?.message ?? err}` };
      }
      const admitted = await admitCall({ fn, canonical, decoded, caller, inst, loadedSet: this.loadedSet, lib });
      if (admitted.response) return admitted.response;
      const release = actual === "action" ? null : await this._turn();
      let value;
      try {
        const environment = this.loadedSet.manifest.modules.find((m) => m.path === moduleFile)?.environment;
        callContext.getStore()?.onStart?.(actual, environment ?? "isolate");
        value = await admitted.accessor[actual](lib.makeFunctionReference(canonical), decoded);
      } finally {
        release?.();
      }
      return checkResult(canonical, value) ?? { status: "success", value: encodeResult(lib, value, format) };
    } catch (err) {
      if (err instanceof HttpError) throw err;
      const name = err?.name && err.name !== "Error" ? err.name : "Error";
      const out = { status: "error", errorMessage: `Uncaught ${name}: ${err?.message ?? String(err)}` };
      if (err && err.data !== undefined && name === "ConvexError") {
        try {
          out.errorData = encodeResult(lib, err.data, format);
        } catch {
          // Unencodable error data is dropped; the message still says what happened.
        }
      }
      return out;
    } finally {
      this._leave();
    }
  }
}

function toBase64(buffer) {
  return Buffer.from(buffer).toString("base64");
}

/**
 * `format: "json"` (the default) answers "clean" JSON as Convex does: int64 as a decimal
 * string, bytes as base64. `convex_encoded_json` answers Convex's typed JSON encoding.
 */
export function encodeResult(lib, value, format) {
  if (format === "convex_encoded_json") return lib.convexToJson(value === undefined ? null : value);
  const clean = (v) => {
    if (v === undefined || v === null) return null;
    if (typeof v === "bigint") return v.toString();
    if (typeof v === "number") {
      if (Number.isFinite(v)) return v;
      return Number.isNaN(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity";
    }
    if (v instanceof ArrayBuffer) return toBase64(v);
    if (Array.isArray(v)) return v.map(clean);
    if (typeof v === "object") {
      const out = {};
      for (const [k, item] of Object.entries(v)) if (item !== undefined) out[k] = clean(item);
      return out;
    }
    return v;
  };
  return clean(value);
}
