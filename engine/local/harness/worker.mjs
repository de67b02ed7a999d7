// A worker thread owning one shard of the fleet's deployments: their runtime instances,
// pushed code and document stores. User code runs here, so the main thread (HTTP, control
// port, time limits) stays responsive, and a runaway function is stopped by terminating
// this thread (shards.mjs), which stops even a synchronous infinite loop.
//
// Messages in:  {id, op, name, args, tag}   (op: see OPS)
// Messages out: {type: "ready"} | {type: "start", id, kind, environment}
//               | {type: "result", id, ok, value} | {type: "result", id, ok: false, error}

import path from "node:path";
import { parentPort, workerData } from "node:worker_threads";

import { Deployment, HttpError, callContext } from "./deployment.mjs";
import { ModuleSets, loadToolchain } from "./runtime.mjs";

const { args, shard } = workerData;

function transactionLimits(a) {
  const limits = {};
  if (a["max-writes"]) limits.documentsWritten = Number(a["max-writes"]);
  if (a["max-reads"]) limits.documentsRead = Number(a["max-reads"]);
  if (a["max-bytes-written"]) limits.bytesWritten = Number(a["max-bytes-written"]);
  if (a["max-bytes-read"]) limits.bytesRead = Number(a["max-bytes-read"]);
  if (a["max-index-ranges"]) limits.databaseQueries = Number(a["max-index-ranges"]);
  return Object.keys(limits).length ? limits : true;
}

function serializeError(err) {
  if (err instanceof HttpError) return { http: true, status: err.status, code: err.code, message: err.message };
  return { http: false, message: String(err?.message ?? err), stack: String(err?.stack ?? "") };
}

async function main() {
  const dataDir = path.resolve(args["data-dir"]);
  const toolchain = path.resolve(args.toolchain);
  const lib = await loadToolchain(toolchain);
  const ctx = {
    lib,
    dataDir,
    args,
    shard,
    sets: new ModuleSets(path.join(dataDir, "modules"), toolchain, lib),
    transactionLimits: transactionLimits(args),
  };
  const deployments = new Map();
  function find(name) {
    const dep = deployments.get(name);
    if (!dep) throw new HttpError(404, "UnknownDeployment", `no deployment named ${JSON.stringify(name)} in this worker`);
    return dep;
  }

  const OPS = {
    add: (_name, spec) => {
      if (!deployments.has(spec.name)) {
        deployments.set(spec.name, new Deployment(ctx, { name: spec.name, port: spec.port, adminKey: spec.adminKey }));
      }
      return null;
    },
    describe: (name) => {
      const dep = find(name);
      return {
        setHash: dep.state.setHash,
        pushes: dep.state.pushes ?? 0,
        pushedAt: dep.state.pushedAt,
        loaded: dep.instance !== null,
      };
    },
    configHashes: (name) => find(name).configHashes(),
    startPush: (name, body) => find(name).startPush(body),
    waitForSchema: (name, body) => find(name).waitForSchema(body),
    finishPush: (name, body) => find(name).finishPush(body),
    call: (name, ...callArgs) => find(name).call(...callArgs),
    exportDocuments: (name, table) => find(name).exportDocuments(table),
    activeSchema: (name) => find(name).activeSchema(),
    flushAll: () => {
      const failures = [];
      for (const dep of deployments.values()) {
        try {
          dep.flush();
        } catch (err) {
          failures.push(`${dep.name}: ${err?.message ?? err}`);
        }
      }
      return failures;
    },
  };

  parentPort.on("message", (msg) => {
    const { id, op, name, args: opArgs = [], tag } = msg;
    const handler = OPS[op];
    const onStart = (kind, environment) => parentPort.postMessage({ type: "start", id, kind, environment });
    const run = async () => {
      if (!handler) throw new Error(`unknown worker operation ${op}`);
      return handler(name, ...opArgs);
    };
    callContext
      .run({ tag: tag ?? null, onStart }, run)
      .then(
        (value) => parentPort.postMessage({ type: "result", id, ok: true, value }),
        (err) => parentPort.postMessage({ type: "result", id, ok: false, error: serializeError(err) }),
      )
      .catch((err) => {
        // The value could not be cloned: answer the error instead of losing the call.
        parentPort.postMessage({ type: "result", id, ok: false, error: serializeError(err) });
      });
  });
  parentPort.postMessage({ type: "ready" });
}

main().catch((err) => {
  process.stderr.write(`[worker ${shard}] fatal: ${err?.stack ?? err}\n`);
  process.exit(1);
});
