// Loads each bundle's convex/schema.ts with the real `convex` library and prints what
// `defineSchema(...).export()` returns, so the engine can compare it with its own model.
//
// Input (stdin, JSON): {"toolchain": "<dir with node_modules>", "workDir": "<dir>",
//   "bundles": [{"id": "<version id>", "schema": "<path to schema.ts>"}]}
// workDir must resolve `convex` (a node_modules link to the toolchain's): the compiled
// schemas are written there and imported, and ESM resolves packages by directory.
// Output (stdout, JSON): {"<id>": {"ok": true, "export": {...}} | {"ok": false, "error": "..."}}
import { mkdirSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { esmOptions, loadEsbuild, readJob } from "./esm_build.mjs";

const job = readJob();
const esbuild = loadEsbuild(job.toolchain);
const outdir = path.join(job.workDir, "schema-out");
mkdirSync(outdir, { recursive: true });

function options(entries) {
  return esmOptions(entries.map((e) => ({ in: e.schema, out: e.key })), outdir);
}

function message(error) {
  if (error && Array.isArray(error.errors) && error.errors.length > 0) {
    return error.errors
      .map((e) => `${e.location ? `${e.location.file}:${e.location.line}: ` : ""}${e.text}`)
      .join("; ");
  }
  return error instanceof Error ? error.message : String(error);
}

const entries = job.bundles.map((b, i) => ({ ...b, key: `schema_${i}` }));
const built = new Map();
try {
  await esbuild.build(options(entries));
  for (const e of entries) built.set(e.key, null);
} catch {
  // Attribute the failure: build one at a time.
  for (const e of entries) {
    try {
      await esbuild.build(options([e]));
      built.set(e.key, null);
    } catch (error) {
      built.set(e.key, message(error));
    }
  }
}

const results = {};
for (const e of entries) {
  const buildError = built.get(e.key);
  if (buildError) {
    results[e.id] = { ok: false, error: `esbuild: ${buildError}` };
    continue;
  }
  try {
    const mod = await import(pathToFileURL(path.join(outdir, `${e.key}.mjs`)).href);
    const schema = mod.default;
    if (!schema || typeof schema.export !== "function") {
      throw new Error("the default export of schema.ts is not a defineSchema(...) result");
    }
    results[e.id] = { ok: true, export: JSON.parse(schema.export()) };
  } catch (error) {
    results[e.id] = { ok: false, error: message(error) };
  }
}
process.stdout.write(JSON.stringify(results));
