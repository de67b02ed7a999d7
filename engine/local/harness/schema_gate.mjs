// The push gate: what Convex refuses when it evaluates a pushed schema, decided by the same
// rule set `byod check` runs (engine/check/convex_rules.py), not a copy of it. A Python child
// (`python -m engine.check.push_gate`) is started lazily, once per thread that pushes, and
// answers one JSON line per schema. The launcher names the interpreter in
// BYOD_HARNESS_PYTHON; without it the gate is off (the harness then checks no schema rules).
//
// The child gets a minimal environment (no keys of any kind), reads its requests on stdin
// and exits when stdin closes, so it ends with the thread or process that started it.

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

import { HttpError } from "./errors.mjs";

const ANSWER_TIMEOUT_MS = 30_000;
const ENV_KEEP = ["PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL", "SYSTEMROOT"];

let child = null;
let nextId = 1;
const pending = new Map();

function failAll(err) {
  for (const { reject } of pending.values()) reject(err);
  pending.clear();
}

function start() {
  const python = process.env.BYOD_HARNESS_PYTHON;
  if (!python) return null;
  const env = { PYTHONDONTWRITEBYTECODE: "1", PYTHONIOENCODING: "utf-8", PYTHONUNBUFFERED: "1" };
  for (const key of ENV_KEEP) if (process.env[key]) env[key] = process.env[key];
  const proc = spawn(python, ["-m", "engine.check.push_gate"], { stdio: ["pipe", "pipe", "pipe"], env });
  const lines = createInterface({ input: proc.stdout });
  let stderr = "";
  proc.stderr.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-2000);
  });
  lines.on("line", (line) => {
    let reply;
    try {
      reply = JSON.parse(line);
    } catch {
      return;
    }
    const waiter = pending.get(reply.id);
    if (!waiter) return;
    pending.delete(reply.id);
    waiter.resolve(reply);
  });
  const gone = (why) => {
    if (child === proc) child = null;
    failAll(new Error(`the schema gate stopped (${why})${stderr ? `: ${stderr.trim()}` : ""}`));
  };
  proc.on("exit", (code, signal) => gone(signal ?? `exit ${code}`));
  proc.on("error", (err) => gone(err?.message ?? String(err)));
  proc.stdin.on("error", () => {}); // a dead child is reported by "exit"
  // never keep the harness alive for the gate's sake
  proc.unref();
  for (const stream of [proc.stdin, proc.stdout, proc.stderr]) stream.unref?.();
  child = proc;
  return proc;
}

function ask(proc, schemaJson, existingTables) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(new Error(`the schema gate did not answer within ${ANSWER_TIMEOUT_MS / 1000} s`));
    }, ANSWER_TIMEOUT_MS);
    timer.unref?.();
    pending.set(id, {
      resolve: (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      reject: (e) => {
        clearTimeout(timer);
        reject(e);
      },
    });
    proc.stdin.write(`${JSON.stringify({ id, schema: schemaJson, existingTables })}\n`);
  });
}

/**
 * The refusal Convex would answer this push with — `{code, message}` — or null when the
 * schema passes (or there is no schema, or the gate is off). `existingTables`: names of the
 * tables already on the deployment (they count towards the table limit).
 */
export async function checkPushedSchema(schemaJson, existingTables = []) {
  if (!schemaJson) return null;
  const proc = child ?? start();
  if (!proc) return null;
  let reply;
  try {
    reply = await ask(proc, schemaJson, [...existingTables]);
  } catch (err) {
    throw new HttpError(500, "SchemaGateFailed", `checking the pushed schema failed: ${err?.message ?? err}`);
  }
  if (reply.error) {
    throw new HttpError(500, "SchemaGateFailed", `checking the pushed schema failed: ${reply.error}`);
  }
  const first = reply.refusals?.[0];
  return first ? { code: first.code, message: first.message } : null;
}

/** Ends the gate's child (for an orderly shutdown; closing stdin is enough). */
export function stopSchemaGate() {
  if (child) {
    child.stdin.end();
    child = null;
  }
}
