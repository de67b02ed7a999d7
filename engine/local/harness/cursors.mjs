// Pagination cursors that know their query, as Convex's do. The test runtime's cursors are
// bare sort keys that any query would accept; the harness wraps each one with a
// fingerprint of the query that produced it, so a cursor that does not decode fails with
// Convex's "Failed to parse cursor" and a cursor from another query fails with Convex's
// `InvalidCursor` error (errors.mjs) instead of silently returning the wrong page.

import { createHash } from "node:crypto";

import { convexError, invalidCursorError } from "./errors.mjs";

const PREFIX = "c1";

function fingerprint(query) {
  return createHash("sha256").update(JSON.stringify(query ?? null)).digest("base64url").slice(0, 16);
}

function wrap(inner, fp) {
  return `${PREFIX}${Buffer.from(JSON.stringify([fp, inner])).toString("base64url")}`;
}

function unwrap(cursor, fp) {
  let decoded = null;
  if (typeof cursor === "string" && cursor.startsWith(PREFIX)) {
    try {
      decoded = JSON.parse(Buffer.from(cursor.slice(PREFIX.length), "base64url").toString("utf8"));
    } catch {
      decoded = null;
    }
  }
  if (!Array.isArray(decoded) || decoded.length !== 2 || typeof decoded[0] !== "string" || typeof decoded[1] !== "string") {
    throw convexError("CursorParse");
  }
  if (decoded[0] !== fp) throw invalidCursorError();
  return decoded[1];
}

/** Wraps the runtime database's `paginate` so cursors carry their query's fingerprint. */
export function wrapCursors(db) {
  if (typeof db.paginate !== "function" || db.__wrappedCursors) return;
  const paginate = db.paginate.bind(db);
  db.__wrappedCursors = true;
  db.paginate = (request) => {
    const fp = fingerprint(request.query);
    const cursor = request.cursor === null || request.cursor === undefined ? null : unwrap(request.cursor, fp);
    const endCursor =
      request.endCursor === null || request.endCursor === undefined ? request.endCursor : unwrap(request.endCursor, fp);
    const out = paginate({ ...request, cursor, endCursor });
    return {
      ...out,
      continueCursor: wrap(out.continueCursor, fp),
      splitCursor: typeof out.splitCursor === "string" ? wrap(out.splitCursor, fp) : out.splitCursor,
    };
  };
}
