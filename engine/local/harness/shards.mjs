// The main thread's side of the worker pool: each deployment belongs to one shard (a
// worker thread, worker.mjs) chosen by its name; its calls and push steps are messages to
// that worker. The main thread enforces the time limits: when a function has run longer
// than its limit, the call is answered with Convex's timeout error and the worker is
// terminated (which stops even a synchronous infinite loop) and replaced; the replacement
// reloads the shard's deployments from disk, where every committed transaction already is.
// Other calls in flight on that worker are answered with a clear error that says whether
// they committed (never a silent duplicate); other shards keep answering throughout.

import { randomBytes } from "node:crypto";
import path from "node:path";
import { Worker } from "node:worker_threads";

import {
  HttpError,
  interruptedAfterCommitError,
  interruptedError,
  timeoutResult,
} from "./errors.mjs";
import { committedTags } from "./store.mjs";

const WORKER_URL = new URL("./worker.mjs", import.meta.url);
const RESPAWN_ATTEMPTS = 3;

/**
 * Convex's time limits (crates/common/src/knobs.rs): queries and mutations 1 s of user time
 * (DATABASE_UDF_USER_TIMEOUT), actions 1800 s in the default runtime
 * (V8_ACTION_USER_TIMEOUT) and 600 s in the Node runtime (NODE_ACTION_USER_TIMEOUT).
 */
export const DEFAULT_LIMITS_MS = { query: 1_000, mutation: 1_000, action: 1_800_000, nodeAction: 600_000 };

function shardOf(name, size) {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619) >>> 0;
  return h % size;
}

function rebuildError(error) {
  if (error?.http) return new HttpError(error.status, error.code, error.message);
  const err = new Error(error?.message ?? "worker error");
  if (error?.stack) err.stack = error.stack;
  return err;
}

class Shard {
  constructor(pool, index) {
    this.pool = pool;
    this.index = index;
    this.specs = new Map(); // name -> spec, re-added to a replacement worker
    this.pending = new Map(); // id -> {resolve, reject, op, name, tag, kind, started, timer, timedOutMs}
    this.worker = null;
    this.ready = null;
    this.recovering = false;
    this.restarts = 0;
  }

  start() {
    this.ready = this._spawn();
    return this.ready;
  }

  /** Starts a worker and adds this shard's deployments to it; resolves when it answers. */
  _spawn() {
    const worker = new Worker(WORKER_URL, {
      workerData: { args: this.pool.args, shard: this.index },
      stdout: false,
      stderr: false,
    });
    this.worker = worker;
    worker.on("message", (msg) => this._onMessage(worker, msg));
    worker.on("error", (err) => {
      this.pool.log(`worker ${this.index}: ${err?.stack ?? err}`);
    });
    worker.on("exit", (code) => {
      if (this.worker === worker && !this.pool.stopping) {
        this.pool.log(`worker ${this.index} exited (code ${code}); replacing it`);
        this._recover();
      }
    });
    return new Promise((resolve, reject) => {
      const onExit = (code) => reject(new Error(`worker ${this.index} exited during start (code ${code})`));
      worker.once("exit", onExit);
      this._onReady = async () => {
        worker.off("exit", onExit);
        try {
          for (const spec of this.specs.values()) await this._send("add", spec.name, [spec]);
          resolve();
        } catch (err) {
          reject(err);
        }
      };
    });
  }

  _onMessage(worker, msg) {
    if (worker !== this.worker) return;
    if (msg.type === "ready") {
      this._onReady?.();
      this._onReady = null;
      return;
    }
    const entry = this.pending.get(msg.id);
    if (!entry) return;
    if (msg.type === "start") {
      entry.started = true;
      entry.kind = msg.kind;
      const limit = this.pool.limitFor(msg.kind, msg.environment);
      entry.timer = setTimeout(() => this._timedOut(msg.id, limit), limit);
      return;
    }
    if (msg.type === "result") {
      this.pending.delete(msg.id);
      clearTimeout(entry.timer);
      if (msg.ok) entry.resolve(msg.value);
      else entry.reject(rebuildError(msg.error));
    }
  }

  /** Sends one operation to the current worker (no waiting for readiness). */
  _send(op, name, args = [], tag = null) {
    const id = this.pool.nextId();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, op, name, tag, kind: null, started: false, timer: null, timedOutMs: null });
      try {
        this.worker.postMessage({ id, op, name, args, tag });
      } catch (err) {
        this.pending.delete(id);
        reject(err);
      }
    });
  }

  /** Sends one operation once the worker is ready (waits while it is being replaced). */
  async request(op, name, args = []) {
    // Re-check after waiting: a replacement may have begun meanwhile.
    for (;;) {
      const ready = this.ready;
      await ready;
      if (ready === this.ready && !this.recovering) break;
    }
    const tag = op === "call" ? this.pool.nextTag() : null;
    return this._send(op, name, args, tag);
  }

  add(spec) {
    this.specs.set(spec.name, spec);
    return this.request("add", spec.name, [spec]);
  }

  _timedOut(id, limit) {
    const entry = this.pending.get(id);
    if (!entry) return;
    entry.timedOutMs = limit;
    this.pool.log(`worker ${this.index}: a ${entry.kind} on ${entry.name} exceeded ${limit} ms; replacing the worker`);
    this._recover();
  }

  /**
   * Terminates the worker, starts a replacement (which reloads this shard's deployments from
   * disk) and answers every call that was in flight on the old one.
   */
  async _recover() {
    if (this.recovering || this.pool.stopping) return;
    this.recovering = true;
    this.restarts += 1;
    const victims = [...this.pending.values()];
    this.pending = new Map();
    for (const v of victims) clearTimeout(v.timer);
    const old = this.worker;
    let settle;
    this.ready = new Promise((resolve, reject) => {
      settle = { resolve, reject };
    });
    this.ready.catch(() => {});
    try {
      await old.terminate();
    } catch {
      // already gone
    }
    this._answer(victims);
    let started = false;
    for (let attempt = 1; attempt <= RESPAWN_ATTEMPTS && !started && !this.pool.stopping; attempt++) {
      try {
        await this._spawn();
        started = true;
      } catch (err) {
        this.pool.log(`worker ${this.index}: replacement ${attempt} failed: ${err?.message ?? err}`);
        await new Promise((r) => setTimeout(r, 200 * attempt));
      }
    }
    this.recovering = false;
    if (started) settle.resolve();
    else {
      settle.reject(new HttpError(503, "WorkerUnavailable", `worker ${this.index} could not be restarted`));
      this.pool.log(`worker ${this.index}: could not be replaced; stopping`);
      this.pool.fatal?.();
    }
  }

  /**
   * Answers the calls that were in flight on a stopped worker. Only a started mutation or
   * action can have committed; its commits carry its tag in the deployment's files, which
   * are complete once the worker is gone (appends are synchronous).
   */
  _answer(victims) {
    const byName = new Map();
    for (const v of victims) {
      if (v.op === "call" && v.started && v.kind !== "query" && v.tag) {
        if (!byName.has(v.name)) byName.set(v.name, []);
        byName.get(v.name).push(v.tag);
      }
    }
    const committed = new Set();
    for (const [name, tags] of byName) {
      try {
        for (const tag of committedTags(path.join(this.pool.dataDir, "deployments", name), tags)) committed.add(tag);
      } catch (err) {
        this.pool.log(`worker ${this.index}: could not check commits of ${name}: ${err?.message ?? err}`);
        for (const tag of tags) committed.add(tag); // unknown: never invite a resend
      }
    }
    for (const v of victims) {
      if (v.tag && committed.has(v.tag)) v.reject(interruptedAfterCommitError(v.name));
      else if (v.timedOutMs !== null) v.resolve(timeoutResult(v.timedOutMs));
      else v.reject(interruptedError(v.name));
    }
  }

  /** Flushes this shard's deployments, bounded; then stops the worker. */
  async stop(boundMs) {
    if (!this.worker) return;
    const timeout = new Promise((resolve) => setTimeout(() => resolve("timeout"), boundMs));
    try {
      const failures = await Promise.race([
        this.ready.then(() => this._send("flushAll", null)),
        timeout,
      ]);
      if (failures === "timeout") this.pool.log(`worker ${this.index}: flush did not finish in ${boundMs} ms`);
      else for (const f of failures ?? []) this.pool.log(`deployment ${f}: flush failed`);
    } catch (err) {
      this.pool.log(`worker ${this.index}: flush failed: ${err?.message ?? err}`);
    }
    await this.worker.terminate().catch(() => {});
  }
}

/** The pool of shards; `args` are the harness's command-line arguments (passed to workers). */
export class ShardPool {
  constructor({ size, args, limits, log }) {
    this.args = args;
    this.dataDir = args["data-dir"];
    this.limits = { ...DEFAULT_LIMITS_MS, ...limits };
    this.log = log;
    this.stopping = false;
    this.fatal = null;
    this._id = 0;
    this._tags = 0;
    this._tagPrefix = randomBytes(4).toString("hex");
    this.shards = Array.from({ length: Math.max(1, size) }, (_, i) => new Shard(this, i));
  }

  nextId() {
    this._id += 1;
    return this._id;
  }

  /** A tag unique across restarts of the harness (commits in the log carry it). */
  nextTag() {
    this._tags += 1;
    return `${this._tagPrefix}.${this._tags.toString(36)}`;
  }

  limitFor(kind, environment) {
    if (kind === "action") return environment === "node" ? this.limits.nodeAction : this.limits.action;
    return kind === "mutation" ? this.limits.mutation : this.limits.query;
  }

  start() {
    return Promise.all(this.shards.map((s) => s.start()));
  }

  shardFor(name) {
    return this.shards[shardOf(name, this.shards.length)];
  }

  restarts() {
    return this.shards.reduce((n, s) => n + s.restarts, 0);
  }

  /** Flushes what is committed and stops every worker; bounded by `boundMs` per shard. */
  async stop(boundMs) {
    this.stopping = true;
    await Promise.all(this.shards.map((s) => s.stop(boundMs)));
  }

  async flushAll() {
    await Promise.all(this.shards.map((s) => s.request("flushAll", null)));
  }
}

/**
 * The main thread's handle on one deployment: what the HTTP front (http.mjs) and the control
 * server need, with every operation on its code and documents forwarded to its worker.
 */
export class DeploymentHandle {
  constructor(pool, spec) {
    this.pool = pool;
    this.name = spec.name;
    this.port = spec.port;
    this.adminKey = spec.adminKey;
    this.fault = { mode: "none", delayMs: 0 };
    this.shard = pool.shardFor(spec.name);
  }

  attach() {
    return this.shard.add({ name: this.name, port: this.port, adminKey: this.adminKey });
  }

  _op(op, ...args) {
    return this.shard.request(op, this.name, args);
  }

  describe() {
    return this._op("describe");
  }

  configHashes() {
    return this._op("configHashes");
  }

  startPush(body) {
    return this._op("startPush", body);
  }

  waitForSchema(body) {
    return this._op("waitForSchema", body);
  }

  finishPush(body) {
    return this._op("finishPush", body);
  }

  /** Runs a function (same arguments as Deployment.call) under its time limit. */
  call(...args) {
    return this._op("call", ...args);
  }

  exportDocuments(table) {
    return this._op("exportDocuments", table);
  }

  activeSchema() {
    return this._op("activeSchema");
  }
}
