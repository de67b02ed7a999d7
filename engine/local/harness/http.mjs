// HTTP front of one deployment: fault injection, admin-key checks, the push protocol
// routes and the function API. Request errors are answered `{code, message}` with a 4xx/5xx
// status; function results and function errors are answered with HTTP 200.

import { timingSafeEqual } from "node:crypto";
import http from "node:http";
import zlib from "node:zlib";
import { promisify } from "node:util";

import { callerFromHeader } from "./auth.mjs";
import { HttpError } from "./deployment.mjs";
import { floatJson, functionResponseJson } from "./wire.mjs";

const brotliDecompress = promisify(zlib.brotliDecompress);
const gunzip = promisify(zlib.gunzip);
const inflate = promisify(zlib.inflate);
const MAX_BODY_BYTES = 256 * 1024 * 1024;
const HOLD_MS_DEFAULT = 10 * 60 * 1000;

export function sendJson(res, status, body) {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

function sendText(res, status, text) {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

export async function readJsonBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, "PayloadTooLarge", "request body too large");
    chunks.push(chunk);
  }
  let buf = Buffer.concat(chunks);
  const encoding = String(req.headers["content-encoding"] ?? "").toLowerCase();
  try {
    if (encoding === "br") buf = await brotliDecompress(buf);
    else if (encoding === "gzip") buf = await gunzip(buf);
    else if (encoding === "deflate") buf = await inflate(buf);
  } catch {
    throw new HttpError(400, "BadRequestBody", `could not decode a ${encoding} request body`);
  }
  if (buf.length === 0) return {};
  try {
    return JSON.parse(buf.toString("utf8"));
  } catch {
    throw new HttpError(400, "BadJsonBody", "the request body is not valid JSON");
  }
}

/** Strips a key-type prefix (`prod:`, `dev:` ...) the way the backend does before comparing. */
function normalizeKey(key) {
  const bar = key.indexOf("|");
  const colon = key.indexOf(":");
  if (colon >= 0 && (bar < 0 || colon < bar)) return key.slice(colon + 1);
  return key;
}

function sameKey(given, expected) {
  const a = Buffer.from(normalizeKey(given));
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Checks the caller. Admin routes need the admin key; function routes (`functionRoute`)
 * also serve anonymous callers and users with a `Bearer` JWT (verified where the
 * deployment's `auth.config` lives, see auth.mjs). Returns `{admin}` or
 * `{admin: false, token}` for function routes.
 */
function checkAuth(dep, req, url, body, functionRoute = false) {
  let given = null;
  const header = req.headers.authorization;
  if (typeof header === "string" && /^convex /i.test(header)) given = header.slice(7).trim();
  else if (url.searchParams.has("adminKey")) given = url.searchParams.get("adminKey");
  if (!given && functionRoute) return callerFromHeader(header);
  if (!given) {
    throw new HttpError(401, "MissingAccessToken", "this endpoint needs an admin key: send `Authorization: Convex <admin key>`");
  }
  // `<admin key>:<base64 JSON identity>`: an admin acting as a user (ConvexHttpClient.setAdminAuth).
  let actingAs = null;
  const acting = /^(.*\|[^:]*):([A-Za-z0-9+/=]+)$/.exec(given);
  if (functionRoute && acting) {
    try {
      actingAs = JSON.parse(Buffer.from(acting[2], "base64").toString("utf8"));
      given = acting[1];
    } catch {
      actingAs = null;
    }
  }
  const bodyKey = body && typeof body.adminKey === "string" ? body.adminKey : null;
  if (!sameKey(given, dep.adminKey) || (bodyKey !== null && !sameKey(bodyKey, dep.adminKey))) {
    throw new HttpError(401, "BadAdminKey", "The provided admin key was invalid for this instance");
  }
  return { admin: true, token: null, actingAs };
}

/** A body whose numbers are all float64 values (documents in Convex JSON), written with `1.0`. */
export function sendValueJson(res, status, body) {
  if (res.headersSent || res.destroyed) return;
  const text = floatJson(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

/** A function result or error: HTTP 200, floats written as Convex writes them (`1.0`). */
function sendFunctionResult(res, body) {
  if (res.headersSent || res.destroyed) return;
  const text = functionResponseJson(body);
  res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

function holdRequest(dep, req, res, ms) {
  // Never answers; the socket closes after `ms` (or at shutdown).
  const timer = setTimeout(() => req.socket.destroy(), ms || HOLD_MS_DEFAULT);
  dep.held.add(req.socket);
  req.socket.once("close", () => {
    clearTimeout(timer);
    dep.held.delete(req.socket);
  });
}

/** Applies the deployment's fault mode; returns true when the request was consumed. */
async function applyFault(dep, req, res) {
  const { mode, delayMs } = dep.fault;
  switch (mode) {
    case "delay":
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      return false;
    case "timeout":
      holdRequest(dep, req, res, delayMs);
      return true;
    case "error500":
      sendJson(res, 500, { code: "InternalServerError", message: "Your request couldn't be completed. Try again later." });
      return true;
    case "revoked":
      sendJson(res, 401, { code: "BadAdminKey", message: "The provided admin key was invalid for this instance" });
      return true;
    case "drop":
      req.socket.destroy();
      return true;
    default:
      return false;
  }
}

const FUNCTION_KINDS = { "/api/query": "query", "/api/mutation": "mutation", "/api/action": "action", "/api/function": null };

async function route(dep, req, res, url) {
  const p = url.pathname;
  if (req.method === "GET" && p === "/version") return sendText(res, 200, `byod-local-${dep.convexVersion}`);
  if (req.method === "GET" && p === "/instance_name") return sendText(res, 200, dep.name);
  if (req.method !== "POST" && !(req.method === "GET" && p === "/api/check_admin_key")) {
    throw new HttpError(400, "UnknownRoute", `${req.method} ${p} is not served by this deployment`);
  }
  const body = req.method === "POST" ? await readJsonBody(req) : {};
  const caller = checkAuth(dep, req, url, body, p in FUNCTION_KINDS || p.startsWith("/api/run/"));
  switch (p) {
    case "/api/check_admin_key":
      return sendJson(res, 200, {});
    case "/api/get_config_hashes":
      return sendJson(res, 200, await dep.configHashes());
    case "/api/deploy2/evaluate_schema":
      return sendJson(res, 200, { componentSchemaEvaluations: {}, newComponentDefinitions: [] });
    case "/api/deploy2/evaluate_push": {
      const started = await dep.startPush({ ...body, dryRun: true });
      return sendJson(res, 200, { schemaChange: started.schemaChange });
    }
    case "/api/deploy2/start_push":
      return sendJson(res, 200, await dep.startPush(body));
    case "/api/deploy2/wait_for_schema":
      return sendJson(res, 200, await dep.waitForSchema(body));
    case "/api/deploy2/finish_push":
      return sendJson(res, 200, await dep.finishPush(body));
    case "/api/deploy2/report_push_completed":
      return sendJson(res, 200, {});
    default:
      break;
  }
  if (p in FUNCTION_KINDS) {
    return sendFunctionResult(res, await dep.call(FUNCTION_KINDS[p], body.path, body.args, body.format ?? "json", caller));
  }
  if (p.startsWith("/api/run/")) {
    const parts = p.slice("/api/run/".length).split("/").filter(Boolean).map(decodeURIComponent);
    if (parts.length < 2) throw new HttpError(400, "BadFunctionPath", "use /api/run/<module path>/<function name>");
    const fnPath = `${parts.slice(0, -1).join("/")}:${parts[parts.length - 1]}`;
    return sendFunctionResult(res, await dep.call(null, fnPath, body.args, body.format ?? "json", caller));
  }
  throw new HttpError(400, "UnknownRoute", `${req.method} ${p} is not served by this deployment`);
}

/** Starts the HTTP server of one deployment on 127.0.0.1:`dep.port`. */
export function serveDeployment(dep, log) {
  dep.held = new Set();
  const server = http.createServer(async (req, res) => {
    try {
      if (await applyFault(dep, req, res)) return;
      const url = new URL(req.url, "http://127.0.0.1");
      await route(dep, req, res, url);
    } catch (err) {
      if (err instanceof HttpError) {
        sendJson(res, err.status, { code: err.code, message: err.message });
      } else {
        log(`deployment ${dep.name}: internal error: ${err?.stack ?? err}`);
        sendJson(res, 500, { code: "InternalServerError", message: "the local deployment failed to handle this request" });
      }
    }
  });
  server.keepAliveTimeout = 30_000;
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(dep.port, "127.0.0.1", () => {
      server.removeListener("error", reject);
      dep.server = server;
      resolve(server);
    });
  });
}

export function closeDeployment(dep) {
  for (const socket of dep.held ?? []) socket.destroy();
  if (!dep.server) return Promise.resolve();
  return new Promise((resolve) => {
    dep.server.close(() => resolve());
    dep.server.closeAllConnections?.();
  });
}
