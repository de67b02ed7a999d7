import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    environment: "node",
    include: ["migrations.test.ts"],
    testTimeout: 120000,
    pool: "forks",
    poolOptions: { forks: { singleFork: true } },
    server: { deps: { inline: ["convex-test"] } },
  },
});
