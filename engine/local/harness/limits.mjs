// Convex's value limits, checked on every document write and on function arguments and
// results, with the backend's codes and messages:
//   crates/value/src/size.rs       value size 32 MiB, nesting 64 ("ValueTooLargeError", "TooNestedError")
//   crates/value/src/object.rs     1024 fields per object ("TooManyFieldsError")
//   crates/value/src/array.rs      8192 array elements ("ArrayTooLong")
//   crates/convex/sync_types/src/identifier.rs   field names: no leading '$', non-control
//                                  ASCII only, at most 1024 characters
//   crates/common/src/document.rs  documents: 1 MiB (MAX_USER_SIZE), nesting 16
//                                  (MAX_DOCUMENT_NESTING), no top-level '_' fields but
//                                  `_id`/`_creationTime` ("InvalidDocumentError")
//   crates/common/src/knobs.rs     arguments and results 16 MiB (FUNCTION_MAX_ARGS_SIZE,
//                                  FUNCTION_MAX_RESULT_SIZE); messages in
//                                  crates/udf/src/helpers.rs and crates/isolate/src/helpers.rs
// Strings must be valid Unicode: the backend holds them as Rust strings, so a lone UTF-16
// surrogate cannot be stored or passed.

import { displayValue } from "./wire.mjs";

export const LIMITS = Object.freeze({
  valueSize: 1 << 25,
  valueNesting: 64,
  objectFields: 1024,
  arrayLength: 8192,
  fieldNameLength: 1024,
  documentSize: 1 << 20,
  documentNesting: 16,
  argsSize: 1 << 24,
  resultSize: 1 << 24,
});

// `_id` and `_creationTime` with a 32-character id: what a stored document adds to its fields.
const SYSTEM_FIELDS_SIZE = (3 + 1 + 34) + (13 + 1 + 9);
const SYSTEM_FIELDS = new Set(["_id", "_creationTime"]);

/** A refused value: `code` is Convex's ErrorMetadata short code. */
export class LimitError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** Byte sizes as the backend prints them (humansize, binary units): "1 MiB", "1.5 MiB", "512 B". */
export function humanSize(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  if (unit === 0) return `${n} B`;
  const text = value.toFixed(2).replace(/\.?0+$/, "");
  return `${text} ${units[unit]}`;
}

function isPlainObject(v) {
  if (v === null || typeof v !== "object" || Array.isArray(v) || v instanceof ArrayBuffer) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Convex's field-name rule (identifier.rs `check_valid_field_name`); null when valid. */
export function fieldNameProblem(name) {
  if (name.startsWith("$")) return `Field name ${name} starts with '$', which is reserved.`;
  for (const ch of name) {
    const c = ch.codePointAt(0);
    if (c < 0x20 || c >= 0x7f) {
      return `Field name ${name} has invalid character ${JSON.stringify(ch)}: Field names can only contain non-control ASCII characters`;
    }
  }
  if (name.length > LIMITS.fieldNameLength) {
    return `Field name is too long (${name.length} > maximum ${LIMITS.fieldNameLength})`;
  }
  return null;
}

function tooNested(nesting) {
  return new LimitError(
    "TooNestedError",
    `Value is too nested (nested ${nesting} levels deep > maximum nesting ${LIMITS.valueNesting})`,
  );
}

function tooLarge(size, limit) {
  return new LimitError("ValueTooLargeError", `Value is too large (${humanSize(size)} > maximum size ${humanSize(limit)})`);
}

/**
 * Walks a Convex value (as `jsonToConvex` decodes it) the way the backend builds one:
 * returns `{size, nesting}` (size.rs's notion of size) or throws a LimitError for the first
 * limit broken.
 */
export function measure(value, depth = 0) {
  if (depth > LIMITS.valueNesting) throw tooNested(depth);
  if (value === null || value === undefined) return { size: 1, nesting: 0 };
  switch (typeof value) {
    case "boolean":
      return { size: 1, nesting: 0 };
    case "number":
    case "bigint":
      return { size: 9, nesting: 0 };
    case "string": {
      if (!value.isWellFormed()) {
        throw new LimitError(
          "InvalidString",
          `String ${displayValue(value.toWellFormed())} is not valid Unicode: it contains a lone surrogate`,
        );
      }
      const size = 2 + Buffer.byteLength(value, "utf8");
      if (size > LIMITS.valueSize) throw tooLarge(size, LIMITS.valueSize);
      return { size, nesting: 0 };
    }
    default:
      break;
  }
  if (value instanceof ArrayBuffer) return { size: 2 + value.byteLength, nesting: 0 };
  if (Array.isArray(value)) {
    if (value.length > LIMITS.arrayLength) {
      throw new LimitError(
        "ArrayTooLong",
        `Array length is too long (${value.length} > maximum length ${LIMITS.arrayLength})`,
      );
    }
    let size = 2;
    let inner = 0;
    for (const item of value) {
      const m = measure(item, depth + 1);
      size += m.size;
      inner = Math.max(inner, m.nesting);
    }
    if (size > LIMITS.valueSize) throw tooLarge(size, LIMITS.valueSize);
    if (inner + 1 > LIMITS.valueNesting) throw tooNested(inner + 1);
    return { size, nesting: inner + 1 };
  }
  if (isPlainObject(value)) {
    const keys = Object.keys(value).filter((k) => value[k] !== undefined);
    if (keys.length > LIMITS.objectFields) {
      throw new LimitError(
        "TooManyFieldsError",
        `Object has too many fields (${keys.length} > maximum number ${LIMITS.objectFields})`,
      );
    }
    let size = 2;
    let inner = 0;
    for (const key of keys) {
      const problem = fieldNameProblem(key);
      if (problem) throw new LimitError("InvalidFieldName", problem);
      const m = measure(value[key], depth + 1);
      size += key.length + 1 + m.size;
      inner = Math.max(inner, m.nesting);
    }
    if (size > LIMITS.valueSize) throw tooLarge(size, LIMITS.valueSize);
    if (inner + 1 > LIMITS.valueNesting) throw tooNested(inner + 1);
    return { size, nesting: inner + 1 };
  }
  throw new LimitError("InvalidValue", `${Object.prototype.toString.call(value)} is not a supported Convex value`);
}

/**
 * Checks the user fields of a document about to be written (insert, patch result,
 * replace). Returns null, or a LimitError with Convex's code and message.
 */
export function documentProblem(fields) {
  let measured;
  try {
    measured = measure(fields);
  } catch (err) {
    if (err instanceof LimitError) return err;
    throw err;
  }
  for (const key of Object.keys(fields)) {
    if (fields[key] !== undefined && key.startsWith("_") && !SYSTEM_FIELDS.has(key)) {
      return new LimitError(
        "InvalidDocumentError",
        `Document(value: ${displayValue(fields)}) isn't a valid document: Field '${key}' starts with an ` +
          "underscore, which is only allowed for system fields like '_id'",
      );
    }
  }
  if (measured.nesting > LIMITS.documentNesting) {
    return new LimitError(
      "InvalidDocumentError",
      `Document(value: ${displayValue(fields)}) isn't a valid document: Document is too nested ` +
        `(nested ${measured.nesting} levels deep > maximum nesting ${LIMITS.documentNesting})`,
    );
  }
  const size = measured.size + SYSTEM_FIELDS_SIZE;
  if (size > LIMITS.documentSize) return tooLarge(size, LIMITS.documentSize);
  return null;
}

/**
 * Checks decoded function arguments (`args` is the single argument object): value limits,
 * then the 16 MiB argument limit. Returns null or the error message Convex answers.
 * `udfPath` is the canonical path, e.g. `messages.js:send`.
 */
export function argumentsProblem(udfPath, args) {
  let measured;
  try {
    measured = measure(args, 1);
  } catch (err) {
    if (err instanceof LimitError) return err.message;
    throw err;
  }
  const size = 2 + measured.size; // positional arguments: an array holding the object
  if (size > LIMITS.argsSize) {
    return `Arguments for ${udfPath} are too large (actual: ${humanSize(size)}, limit: ${humanSize(LIMITS.argsSize)})`;
  }
  return null;
}

/** Checks a function's return value; null or Convex's message. */
export function resultProblem(udfPath, value) {
  let measured;
  try {
    measured = measure(value === undefined ? null : value);
  } catch (err) {
    if (err instanceof LimitError) return `Function ${udfPath} return value invalid: ${err.message}`;
    throw err;
  }
  if (measured.size > LIMITS.resultSize) {
    return `Function ${udfPath} return value is too large (actual: ${humanSize(measured.size)}, limit: ${humanSize(LIMITS.resultSize)})`;
  }
  return null;
}
