// What the engine's Node scripts share: the JSON job they read on stdin, the toolchain's
// esbuild, and how a bundle's TypeScript is compiled for plain Node. One place, so the
// schema export and the function test runner build a bundle the same way.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";

/** The job (JSON) on stdin. */
export function readJob() {
  return JSON.parse(readFileSync(0, "utf8"));
}

/** esbuild from the toolchain directory `toolchain` (CommonJS: ESM ignores NODE_PATH). */
export function loadEsbuild(toolchain) {
  return createRequire(path.join(toolchain, "package.json"))("esbuild");
}

/** Options that bundle each `{in, out}` entry to `<outdir>/<out>.mjs` as ESM for Node,
 *  with packages left as imports (they resolve to the toolchain's `convex`). */
export function esmOptions(entryPoints, outdir) {
  return {
    entryPoints,
    bundle: true,
    format: "esm",
    platform: "node",
    packages: "external",
    outdir,
    outExtension: { ".js": ".mjs" },
    logLevel: "silent",
    write: true,
  };
}
