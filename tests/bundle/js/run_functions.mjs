// Runs a list of calls against one bundle's own functions inside convex-test (plain Node,
// no deployment): the bundle's convex/schema.ts and convex/byod.ts (and byodMigrations.ts
// when it carries data steps) are bundled with esbuild and loaded with the real convex
// library.
//
// stdin: {"toolchain": dir, "bundleDir": dir (with a node_modules link),
//         "calls": [{"kind": "query"|"mutation", "path": "byod:version", "args": {...}}]}
// stdout: [{"ok": true, "value": <convex JSON>} | {"ok": false, "error": "..."}] in order.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { esmOptions, loadEsbuild, readJob } from "../../../engine/js/esm_build.mjs";

const job = readJob();
const esbuild = loadEsbuild(job.toolchain);
const outdir = path.join(job.bundleDir, ".byod-test");
mkdirSync(outdir, { recursive: true });
const migrations = path.join(job.bundleDir, "convex", "byodMigrations.ts");
const withSteps = existsSync(migrations);
await esbuild.build(esmOptions([
  { in: path.join(job.bundleDir, "convex", "schema.ts"), out: "schema" },
  { in: path.join(job.bundleDir, "convex", "byod.ts"), out: "byod" },
  ...(withSteps ? [{ in: migrations, out: "byodMigrations" }] : []),
], outdir));
writeFileSync(
  path.join(outdir, "shim.mjs"),
  'export { convexTest } from "convex-test";\n' +
    'export { makeFunctionReference } from "convex/server";\n' +
    'export { convexToJson, jsonToConvex } from "convex/values";\n',
);
const load = (name) => import(pathToFileURL(path.join(outdir, name)).href);
const { convexTest, makeFunctionReference, convexToJson, jsonToConvex } = await load("shim.mjs");
const schema = (await load("schema.mjs")).default;
const byod = await load("byod.mjs");
const modules = {
  "/convex/_generated/api.js": async () => ({}),
  "/convex/byod.js": async () => byod,
};
if (withSteps) {
  const steps = await load("byodMigrations.mjs");
  modules["/convex/byodMigrations.js"] = async () => steps;
}
const t = convexTest(schema, modules);
const results = [];
for (const call of job.calls) {
  const ref = makeFunctionReference(call.path);
  try {
    const args = jsonToConvex(call.args ?? {});
    const value = call.kind === "query" ? await t.query(ref, args) : await t.mutation(ref, args);
    results.push({ ok: true, value: convexToJson(value === undefined ? null : value) });
  } catch (error) {
    results.push({ ok: false, error: error instanceof Error ? error.message : String(error) });
  }
}
process.stdout.write(JSON.stringify(results));
