// Entry point: one Node process hosting many local deployments, each on its own loopback
// port, plus a control server (faults, document inspection, adding deployments, shutdown).
// The main thread serves HTTP and enforces time limits; the deployments' runtime instances
// and documents live in a pool of worker threads (shards.mjs, worker.mjs).
//
//   node main.mjs --data-dir D --toolchain T --control-port P [--workers N]
//       [--max-writes N] [--max-reads N] [--max-bytes-written N] [--max-bytes-read N]
//       [--max-index-ranges N] [--query-timeout-ms MS] [--action-timeout-ms MS]
//
// Deployment names, ports and admin keys, and the control token, are read from
// D/secrets.json (written by the Python launcher, mode 0600).

import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { timingSafeEqual } from "node:crypto";

import { HttpError } from "./errors.mjs";
import { closeDeployment, readJsonBody, sendJson, sendValueJson, serveDeployment } from "./http.mjs";
import { DeploymentHandle, ShardPool } from "./shards.mjs";

// SIGTERM: committed data is flushed (bounded per worker), then the process exits; a worker
// stuck in a runaway function is terminated. The whole shutdown never takes longer than this.
const FLUSH_BOUND_MS = 3_000;
const SHUTDOWN_BOUND_MS = 8_000;

const FAULT_MODES = new Set(["none", "delay", "timeout", "error500", "revoked", "drop"]);

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith("--")) throw new Error(`unexpected argument ${arg}`);
    const key = arg.slice(2);
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`${arg} needs a value`);
    out[key] = value;
    i += 1;
  }
  for (const required of ["data-dir", "toolchain", "control-port"]) {
    if (!out[required]) throw new Error(`--${required} is required`);
  }
  return out;
}

function log(message) {
  process.stderr.write(`[${new Date().toISOString()}] ${message}\n`);
}

function timeLimits(args) {
  const limits = {};
  if (args["query-timeout-ms"]) limits.query = limits.mutation = Number(args["query-timeout-ms"]);
  if (args["action-timeout-ms"]) limits.action = limits.nodeAction = Number(args["action-timeout-ms"]);
  return limits;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const dataDir = path.resolve(args["data-dir"]);
  const toolchain = path.resolve(args.toolchain);
  args["data-dir"] = dataDir;
  args.toolchain = toolchain;
  const secrets = JSON.parse(fs.readFileSync(path.join(dataDir, "secrets.json"), "utf8"));
  const convexVersion = JSON.parse(
    fs.readFileSync(path.join(toolchain, "node_modules", "convex", "package.json"), "utf8"),
  ).version;
  const cores = typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length;
  const workers = args.workers ? Math.max(1, Number(args.workers)) : Math.max(1, Math.min(4, cores));
  const pool = new ShardPool({ size: workers, args, limits: timeLimits(args), log });
  await pool.start();

  const deployments = new Map();
  async function addDeployment(spec) {
    if (deployments.has(spec.name)) throw new HttpError(409, "Exists", `deployment ${spec.name} already exists`);
    const dep = new DeploymentHandle(pool, { name: spec.name, port: spec.port, adminKey: spec.admin_key });
    dep.convexVersion = convexVersion;
    await dep.attach();
    await serveDeployment(dep, log);
    deployments.set(dep.name, dep);
    return dep;
  }
  for (const spec of secrets.deployments ?? []) await addDeployment(spec);

  let stopping = false;
  async function shutdown(code) {
    if (stopping) return;
    stopping = true;
    setTimeout(() => {
      log(`shutdown took longer than ${SHUTDOWN_BOUND_MS} ms; exiting`);
      process.exit(code);
    }, SHUTDOWN_BOUND_MS);
    control.close();
    await Promise.all([...deployments.values()].map((d) => closeDeployment(d)));
    await pool.stop(FLUSH_BOUND_MS);
    process.exit(code);
  }
  pool.fatal = () => shutdown(1);

  const token = Buffer.from(String(secrets.control_token));
  function authorized(req) {
    const given = Buffer.from(String(req.headers["x-byod-control-token"] ?? ""));
    return given.length === token.length && timingSafeEqual(given, token);
  }
  function find(name) {
    const dep = deployments.get(name);
    if (!dep) throw new HttpError(404, "UnknownDeployment", `no deployment named ${JSON.stringify(name)}`);
    return dep;
  }
  async function describe(dep) {
    const state = await dep.describe();
    return {
      name: dep.name,
      port: dep.port,
      url: `http://127.0.0.1:${dep.port}`,
      fault: dep.fault,
      setHash: state.setHash,
      pushes: state.pushes,
      pushedAt: state.pushedAt,
      loaded: state.loaded,
      worker: dep.shard.index,
    };
  }

  const control = http.createServer(async (req, res) => {
    try {
      if (!authorized(req)) throw new HttpError(403, "Forbidden", "missing or wrong control token");
      const url = new URL(req.url, "http://127.0.0.1");
      const route = `${req.method} ${url.pathname}`;
      const q = url.searchParams;
      switch (route) {
        case "GET /_control/health":
          return sendJson(res, 200, {
            ok: true,
            pid: process.pid,
            deployments: deployments.size,
            convexVersion,
            workers: pool.shards.length,
            workerRestarts: pool.restarts(),
            limitsMs: pool.limits,
          });
        case "GET /_control/deployments":
          return sendJson(res, 200, { deployments: await Promise.all([...deployments.values()].map(describe)) });
        case "POST /_control/deployments": {
          const body = await readJsonBody(req);
          const dep = await addDeployment(body);
          return sendJson(res, 200, await describe(dep));
        }
        case "POST /_control/fault": {
          const body = await readJsonBody(req);
          const dep = find(body.deployment);
          if (!FAULT_MODES.has(body.mode)) {
            throw new HttpError(400, "BadFaultMode", `mode must be one of ${[...FAULT_MODES].join(", ")}`);
          }
          dep.fault = { mode: body.mode, delayMs: Math.max(0, Number(body.delay_ms ?? 0)) };
          if (body.mode !== "timeout") for (const socket of dep.held) socket.destroy();
          return sendJson(res, 200, await describe(dep));
        }
        case "GET /_control/documents": {
          const dep = find(q.get("deployment"));
          return sendValueJson(res, 200, { documents: await dep.exportDocuments(q.get("table") || null) });
        }
        case "GET /_control/state": {
          const dep = find(q.get("deployment"));
          return sendJson(res, 200, { ...(await describe(dep)), schema: await dep.activeSchema() });
        }
        case "POST /_control/flush":
          await pool.flushAll();
          return sendJson(res, 200, { ok: true });
        case "POST /_control/shutdown":
          sendJson(res, 200, { ok: true });
          setImmediate(() => shutdown(0));
          return undefined;
        default:
          throw new HttpError(404, "UnknownRoute", `${route} is not a control route`);
      }
    } catch (err) {
      if (err instanceof HttpError) sendJson(res, err.status, { code: err.code, message: err.message });
      else {
        log(`control: ${err?.stack ?? err}`);
        sendJson(res, 500, { code: "InternalServerError", message: String(err?.message ?? err) });
      }
    }
  });
  await new Promise((resolve, reject) => {
    control.once("error", reject);
    control.listen(Number(args["control-port"]), "127.0.0.1", resolve);
  });
  process.on("SIGTERM", () => shutdown(0));
  process.on("SIGINT", () => shutdown(0));
  log(`ready: ${deployments.size} deployment(s) on ${pool.shards.length} worker(s), control port ${args["control-port"]}`);
}

main().catch((err) => {
  log(`fatal: ${err?.stack ?? err}`);
  process.exit(1);
});
