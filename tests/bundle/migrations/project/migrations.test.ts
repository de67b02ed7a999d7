// Runs every case under ./edges with convex-test: seed documents valid under the source,
// run each generated data step page by page to completion (Convex's transaction limits
// enforced), check that a re-run changes nothing, then insert every document into a
// fresh instance whose schema is the target version (convex-test validates each insert).
import { convexTest } from "convex-test";
import { makeFunctionReference } from "convex/server";
import { mkdirSync, writeFileSync } from "node:fs";
import { expect, test } from "vitest";

type Json = any;
type Case = {
  name: string;
  batchSize: number;
  order: string[];
  seeds: Record<string, Json[]>;
  steps: { fn: string; table: string }[];
  expectedCounts: Record<string, number>;
  targetTables: string[];
  expectError?: string;
};
type Page = { continueCursor: string; isDone: boolean; processed: number; changed: number };

const cases = import.meta.glob("./edges/*/case.json", { eager: true, import: "default" }) as Record<string, Case>;
const schemas = import.meta.glob("./edges/*/bundle/convex/schema.ts", { eager: true }) as Record<string, { default: any }>;
const targets = import.meta.glob("./edges/*/target/schema.ts", { eager: true }) as Record<string, { default: any }>;
const modules = import.meta.glob("./edges/*/bundle/convex/**/*.*s");

function decode(value: Json, ids: Record<string, string[]>): Json {
  if (Array.isArray(value)) return value.map((v) => decode(v, ids));
  if (value !== null && typeof value === "object") {
    if ("$ref" in value) return ids[value.$ref[0]][value.$ref[1]];
    if ("$int64" in value) return BigInt(value.$int64);
    if ("$bytes" in value) return Uint8Array.from(atob(value.$bytes), (c) => c.charCodeAt(0)).buffer;
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, decode(v, ids)]));
  }
  return value;
}

/** What real Convex stores after a patch: fields set to undefined are removed. */
function stored(doc: Record<string, Json>): Record<string, Json> {
  return Object.fromEntries(Object.entries(doc).filter(([, v]) => v !== undefined));
}

for (const [path, c] of Object.entries(cases)) {
  const dir = path.slice(0, -"case.json".length);
  test(c.name, async () => {
    const mods = Object.fromEntries(
      Object.entries(modules).filter(([k]) => k.startsWith(dir + "bundle/convex/")),
    );
    const t = convexTest({
      schema: schemas[dir + "bundle/convex/schema.ts"].default,
      modules: mods,
      transactionLimits: true,
    });
    const ids: Record<string, string[]> = {};
    for (const table of c.order) {
      ids[table] = await t.run(async (ctx: any) => {
        const out: string[] = [];
        for (const doc of c.seeds[table]) out.push(await ctx.db.insert(table, decode(doc, ids)));
        return out;
      });
    }
    if (c.expectError) {
      // a bad document fails the step, the error names it, and nothing is written
      const s = c.steps[0];
      const ref = makeFunctionReference<"mutation">(`byodMigrations:${s.fn}`);
      const before = await t.run(async (ctx: any) => ctx.db.query(s.table).collect());
      await expect(t.mutation(ref, { cursor: null, batchSize: 1000 })).rejects.toThrow(
        new RegExp(`byod data step ${s.fn} failed on document ${ids[s.table][Number(c.expectError)]} of table ${s.table}`),
      );
      const after = await t.run(async (ctx: any) => ctx.db.query(s.table).collect());
      expect(after).toEqual(before);
      return;
    }
    const report: Record<string, Json> = { steps: {} };
    const runAll = async (fn: string): Promise<{ pages: number; processed: number; changed: number }> => {
      const ref = makeFunctionReference<"mutation">(`byodMigrations:${fn}`);
      let cursor: string | null = null;
      const total = { pages: 0, processed: 0, changed: 0 };
      for (;;) {
        const r = (await t.mutation(ref, { cursor, batchSize: c.batchSize })) as Page;
        total.pages += 1;
        total.processed += r.processed;
        total.changed += r.changed;
        expect(r.processed).toBeLessThanOrEqual(c.batchSize);
        if (r.isDone) return total;
        cursor = r.continueCursor;
        expect(total.pages, `${fn} does not finish`).toBeLessThan(1000);
      }
    };
    for (const s of c.steps) {
      // a dry run of the first page writes nothing
      const before = await t.run(async (ctx: any) => ctx.db.query(s.table).collect());
      const ref = makeFunctionReference<"mutation">(`byodMigrations:${s.fn}`);
      await t.mutation(ref, { cursor: null, batchSize: c.batchSize, dryRun: true });
      const after = await t.run(async (ctx: any) => ctx.db.query(s.table).collect());
      expect(after.map(stored), `${s.fn} dry run wrote`).toEqual(before.map(stored));
      const seen = before.length;
      const first = await runAll(s.fn);
      expect(first.processed, `${s.fn} saw every document`).toBe(seen);
      const again = await runAll(s.fn);
      expect(again.changed, `${s.fn}: re-running changed documents`).toBe(0);
      report.steps[s.fn] = { first, again };
    }
    // re-running every step once more, after all of them, changes nothing either
    for (const s of c.steps) {
      expect((await runAll(s.fn)).changed, `${s.fn}: changed after later steps`).toBe(0);
    }
    const dump: Record<string, Json[]> = await t.run(async (ctx: any) => {
      const out: Record<string, Json[]> = {};
      for (const table of c.order) out[table] = (await ctx.db.query(table).collect()).map(stored);
      return out;
    });
    for (const table of c.order) {
      expect(dump[table].length, `count of ${table}`).toBe(c.expectedCounts[table]);
    }
    const oracle = convexTest({ schema: targets[dir + "target/schema.ts"].default, modules: mods });
    await oracle.run(async (ctx: any) => {
      for (const table of c.targetTables) {
        for (const doc of dump[table] ?? []) {
          const { _id, _creationTime, ...body } = doc;
          try {
            await ctx.db.insert(table, body);
          } catch (error) {
            throw new Error(`${c.name}: document ${_id} of ${table} fails the target schema: ${error}`);
          }
        }
      }
    });
    mkdirSync("out", { recursive: true });
    report.docs = dump;
    writeFileSync(`out/${c.name}.json`, JSON.stringify(report, (_k, v) =>
      typeof v === "bigint" ? { $int64: v.toString() } : v instanceof ArrayBuffer ? { $bytes: "" } : v));
  });
}
