// Every error text the harness answers in Convex's own words, in one place, so tools that
// match on Convex's messages (the fleet runner's classifiers) can be tested against the
// local deployments. Each text is taken from the open-source Convex backend; the source
// file is named next to it (and listed in engine/local/README.md).

/** An error answered as `{code, message}` with an HTTP status, like Convex's request errors. */
export class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** crates/database/src/reads.rs (`OVER_LIMIT_HELP`). */
export const OVER_LIMIT_HELP =
  "Consider using smaller limits in your queries, paginating your queries, or using indexed " +
  "queries with a selective index range expressions.";

const BYTE_UNITS = [
  [2 ** 30, "GiB"],
  [1_000_000_000, "GB"],
  [2 ** 20, "MiB"],
  [1_000_000, "MB"],
  [2 ** 10, "KiB"],
  [1_000, "KB"],
];

/** Convex's byte formatting (crates/common/src/fmt.rs `format_bytes`): "16 MiB", "1534 bytes". */
export function formatBytes(n) {
  if (n === 0) return "0 bytes";
  for (const [unit, name] of BYTE_UNITS) {
    if (n < unit) continue;
    if (n % unit === 0) return `${n / unit} ${name}`;
    if ((n * 10) % unit === 0) return `${Math.floor(n / unit)}.${Math.floor((n * 10) / unit) % 10} ${name}`;
  }
  return `${n} bytes`;
}

/** Rust's `Debug` of a `Duration` of whole milliseconds: "1s", "1.5s", "600s", "250ms". */
export function formatDuration(ms) {
  ms = Math.max(0, Math.round(ms));
  if (ms === 0) return "0ns";
  if (ms < 1000) return `${ms}ms`;
  const whole = Math.floor(ms / 1000);
  const frac = String(ms % 1000).padStart(3, "0").replace(/0+$/, "");
  return frac ? `${whole}.${frac}s` : `${whole}s`;
}

/**
 * The messages. Codes are Convex's `ErrorMetadata` short codes; `source` is where the text
 * is formatted in the backend.
 */
export const CONVEX_ERRORS = {
  TooManyDocumentsRead: {
    source: "crates/database/src/reads.rs",
    message: (limit) =>
      `Too many documents read in a single function execution (limit: ${limit}). ${OVER_LIMIT_HELP}`,
  },
  TooManyBytesRead: {
    source: "crates/database/src/reads.rs",
    message: (limit) =>
      `Too many bytes read in a single function execution (limit: ${limit} bytes). ${OVER_LIMIT_HELP}`,
  },
  TooManyReads: {
    source: "crates/database/src/reads.rs",
    message: (limit) => `Too many reads in a single function execution (limit: ${limit}). ${OVER_LIMIT_HELP}`,
  },
  TooManyWrites: {
    source: "crates/database/src/writes.rs",
    message: (limit) => `Too many writes in a single function execution (limit: ${limit})`,
  },
  TooManyBytesWritten: {
    source: "crates/database/src/writes.rs",
    message: (limit) => `Too many bytes written in a single function execution (limit: ${formatBytes(limit)})`,
  },
  UserTimeout: {
    source: "crates/isolate/src/termination.rs",
    message: (ms) => `Function execution timed out (maximum duration: ${formatDuration(ms)})`,
  },
  InvalidCursor: {
    source: "crates/database/src/query/mod.rs",
    message: () =>
      "InvalidCursor: Tried to run a query starting from a cursor, but it looks like this cursor is " +
      "from a different query.",
  },
  CursorParse: {
    source: "crates/keybroker/src/broker.rs",
    message: () => "Failed to parse cursor",
  },
};

/** An error thrown into user code the way a Convex syscall error reaches it (plain `Error`). */
export function convexError(code, ...args) {
  const err = new Error(CONVEX_ERRORS[code].message(...args));
  err.convexCode = code;
  return err;
}

/**
 * The foreign-cursor error: Convex throws it with data, so user code sees a `ConvexError`
 * whose data is `{isConvexSystemError: true, paginationError: "InvalidCursor"}`.
 */
export function invalidCursorError() {
  const err = convexError("InvalidCursor");
  err.data = { isConvexSystemError: true, paginationError: "InvalidCursor" };
  return err;
}

/** The function-error body of a query/mutation/action stopped at its time limit. */
export function timeoutResult(ms) {
  return { status: "error", errorMessage: CONVEX_ERRORS.UserTimeout.message(ms) };
}

// ---- the harness's own errors (no Convex equivalent: a worker was replaced) ----------------

/** A call that was stopped before it committed anything: safe to send again. */
export function interruptedError(name) {
  return new HttpError(
    503,
    "CallInterrupted",
    `the call to local deployment ${name} was interrupted before it committed anything, because ` +
      "another function sharing its worker exceeded its time limit or the worker failed; nothing " +
      "was written: send it again",
  );
}

/** A mutation or action whose writes committed but whose answer was lost: never resend. */
export function interruptedAfterCommitError(name) {
  return new HttpError(
    500,
    "CallInterruptedAfterCommit",
    `the call to local deployment ${name} committed its writes, but its result was lost when ` +
      "its worker was replaced; do not send it again",
  );
}
