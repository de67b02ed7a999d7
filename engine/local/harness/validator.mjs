// Validates Convex values against the validator JSON that `defineSchema(...).export()` and
// `exportArgs()` emit, with the backend's messages (crates/common/src/schemas/validator.rs
// `ValidationError`, `impl Display for Validator`). The harness needs its own validator
// because the test runtime skips `record` validators, words its errors its own way, and
// never re-checks existing documents when a schema changes.

import { documentProblem } from "./limits.mjs";
import { displayValue, formatFloat } from "./wire.mjs";

const SYSTEM_FIELDS = new Set(["_id", "_creationTime"]);

/** Table name encoded in an id minted by the test runtime: leading digits, then the table. */
export function tableNameFromId(id) {
  const match = /^[0-9]+/.exec(id);
  if (!match || match[0].length === id.length) return null;
  return id.slice(match[0].length);
}

function isPlainObject(value) {
  if (value === null || typeof value !== "object") return false;
  if (Array.isArray(value) || value instanceof ArrayBuffer) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function literalText(value) {
  if (typeof value === "bigint") return "<bigint>";
  if (typeof value === "number") return Number.isFinite(value) ? formatFloat(value) : "<number>";
  return JSON.stringify(value);
}

function fieldText(field) {
  const inner = describeValidator(field.fieldType);
  return field.optional ? `v.optional(${inner})` : inner;
}

/** A validator as the backend prints it, e.g. `v.union(v.string(), v.null())`. */
export function describeValidator(validator, decode) {
  switch (validator.type) {
    case "id":
      return `v.id(${JSON.stringify(validator.tableName)})`;
    case "literal": {
      const v = validator.value;
      if (v !== null && typeof v === "object") return v.$integer !== undefined ? "v.literal(<bigint>)" : "v.literal(<number>)";
      return `v.literal(${literalText(decode ? literalValue(v, decode) : v)})`;
    }
    case "array":
      return `v.array(${describeValidator(validator.value)})`;
    case "record":
      return `v.record(${describeValidator(validator.keys)}, ${fieldText(validator.values)})`;
    case "union":
      return `v.union(${validator.value.map((m) => describeValidator(m)).join(", ")})`;
    case "object": {
      const keys = Object.keys(validator.value).sort();
      return `v.object({${keys.map((k) => `${k}: ${fieldText(validator.value[k])}`).join(", ")}})`;
    }
    case "number":
    case "float64":
      return "v.float64()";
    case "bigint":
    case "int64":
      return "v.int64()";
    default:
      return `v.${validator.type}()`;
  }
}

function context(path) {
  return path ? `Path: ${path}` : "";
}

function noMatch(path, value, validator) {
  return `Value does not match validator.\n${context(path)}\nValue: ${displayValue(value)}\nValidator: ${describeValidator(validator)}`;
}

function literalValue(jsonValue, decode) {
  // Literals are exported in Convex JSON (an int64 is `{"$integer": ...}`).
  if (jsonValue !== null && typeof jsonValue === "object") return decode(jsonValue);
  return jsonValue;
}

/**
 * Returns null when `value` satisfies `validator`, else Convex's message for the first
 * mismatch. `path` is the backend's path notation (`.a[0]`, "" at the root); `decode` is
 * `jsonToConvex` (for int64 literals); `tableOf(id)` names an id's table (null when the id
 * does not decode), by default the test runtime's legacy id layout.
 */
export function checkValue(validator, value, path, decode, tableOf = tableNameFromId) {
  switch (validator.type) {
    case "any":
      return null;
    case "null":
      return value === null ? null : noMatch(path, value, validator);
    case "number":
    case "float64":
      return typeof value === "number" ? null : noMatch(path, value, validator);
    case "bigint":
    case "int64":
    case "commitTs":
      return typeof value === "bigint" ? null : noMatch(path, value, validator);
    case "boolean":
      return typeof value === "boolean" ? null : noMatch(path, value, validator);
    case "string":
      return typeof value === "string" ? null : noMatch(path, value, validator);
    case "bytes":
      return value instanceof ArrayBuffer ? null : noMatch(path, value, validator);
    case "literal": {
      const expected = literalValue(validator.value, decode);
      if (value === expected) return null;
      return `\`${displayValue(value)}\` does not match literal validator \`${describeValidator(validator, decode)}\`.${context(path)}`;
    }
    case "id": {
      const table = typeof value === "string" ? tableOf(value) : null;
      if (table === null) return noMatch(path, value, validator);
      if (table === validator.tableName) return null;
      if (table.startsWith("_")) {
        return `Found ID "${value}" from a system table, which does not match the table name in validator \`v.id("${validator.tableName}")\`.${context(path)}`;
      }
      return `Found ID "${value}" from table \`${table}\`, which does not match the table name in validator \`v.id("${validator.tableName}")\`.${context(path)}`;
    }
    case "array": {
      if (!Array.isArray(value)) return noMatch(path, value, validator);
      for (let i = 0; i < value.length; i++) {
        const problem = checkValue(validator.value, value[i], `${path}[${i}]`, decode, tableOf);
        if (problem) return problem;
      }
      return null;
    }
    case "union": {
      if (validator.value.length === 1) return checkValue(validator.value[0], value, path, decode, tableOf);
      for (const member of validator.value) {
        if (checkValue(member, value, path, decode, tableOf) === null) return null;
      }
      return noMatch(path, value, validator);
    }
    case "record": {
      if (!isPlainObject(value)) return noMatch(path, value, validator);
      for (const [key, item] of Object.entries(value)) {
        if (item === undefined) continue;
        const keyProblem = checkValue(validator.keys, key, `${path}.keys()`, decode, tableOf);
        if (keyProblem) return keyProblem;
        const problem = checkValue(validator.values.fieldType, item, `${path}.values()`, decode, tableOf);
        if (problem) return problem;
      }
      return null;
    }
    case "object": {
      if (!isPlainObject(value)) return noMatch(path, value, validator);
      for (const key of Object.keys(validator.value).sort()) {
        const field = validator.value[key];
        const item = value[key];
        if (item === undefined) {
          if (!field.optional) {
            return (
              `Object is missing the required field \`${key}\`. Consider wrapping the field validator in ` +
              `\`v.optional(...)\` if this is expected.\n${context(path)}\nObject: ${displayValue(value)}\n` +
              `Validator: ${describeValidator(validator)}`
            );
          }
          continue;
        }
        const problem = checkValue(field.fieldType, item, `${path}.${key}`, decode, tableOf);
        if (problem) return problem;
      }
      for (const key of Object.keys(value).sort()) {
        if (value[key] !== undefined && !(key in validator.value)) {
          return (
            `Object contains extra field \`${key}\` that is not in the validator.\n${context(path)}\n` +
            `Object: ${displayValue(value)}\nValidator: ${describeValidator(validator)}`
          );
        }
      }
      return null;
    }
    default:
      return `unsupported validator type ${JSON.stringify(validator.type)} at ${path || "(root)"}`;
  }
}

/**
 * Checks a function's decoded arguments against its `exportArgs()` validator JSON, as the
 * backend does before running it (crates/model/src/modules/function_validators.rs,
 * crates/udf/src/validation.rs). Returns null or the error message Convex answers.
 */
export function argumentsValidationProblem(argsValidator, args, decode, tableOf) {
  if (!argsValidator || argsValidator.type === "any") return null;
  if (!isPlainObject(args)) {
    return `ArgumentValidationError: Expected to receive an object as the function's argument. Instead received: ${displayValue(args)}`;
  }
  const problem = checkValue(argsValidator, args, "", decode, tableOf);
  return problem ? `ArgumentValidationError: ${problem}` : null;
}

/**
 * Replaces a runtime instance's write check (`db._validate`, called on insert, patch and
 * replace with the document's user fields): Convex's value limits on every write, then the
 * active schema (`getSchema()`) with the backend's messages. `tableOf(id)` resolves ids.
 */
export function installWriteChecks(db, getSchema, decode, tableOf) {
  db._validate = (tableName, doc) => {
    const limit = documentProblem(doc);
    if (limit) throw new Error(limit.message);
    const schema = getSchema();
    if (!schema || schema.schemaValidation === false) return;
    const table = schema.tables.find((t) => t.tableName === tableName);
    const problem = table
      ? checkValue(table.documentType, doc, "", decode, tableOf)
      : `table "${tableName}" is not declared in the schema`;
    if (problem) {
      throw new Error(
        `Failed to insert or update a document in table "${tableName}" because it does not match the schema: ${problem}`,
      );
    }
  };
}

/** Checks a stored document (system fields included) against a table's `documentType`. */
export function checkDocument(documentType, doc, decode, tableOf = tableNameFromId) {
  if (!documentType || documentType.type === "any") return null;
  const fields = {};
  for (const [k, v] of Object.entries(doc)) if (!SYSTEM_FIELDS.has(k)) fields[k] = v;
  return checkValue(documentType, fields, "", decode, tableOf);
}

function tablesByName(schema) {
  const map = new Map();
  for (const table of schema?.tables ?? []) map.set(table.tableName, table);
  return map;
}

/**
 * Checks every stored document against a new schema, the way a push is checked.
 * `docsByTable`: Map<table, Array<doc>>. Returns null or
 * `{tableName, documentId, error}` for the first failure (tables in name order).
 * Tables whose validator did not change under an enforced old schema are skipped.
 * `tableOf(id)` resolves ids for `v.id` (see `checkValue`).
 */
export function validateSchemaChange(oldSchema, newSchema, docsByTable, decode, tableOf = tableNameFromId) {
  if (!newSchema || newSchema.schemaValidation === false) return null;
  const oldTables = tablesByName(oldSchema);
  const newTables = tablesByName(newSchema);
  const oldEnforced = oldSchema && oldSchema.schemaValidation !== false;
  for (const tableName of [...docsByTable.keys()].sort()) {
    const docs = docsByTable.get(tableName);
    if (!docs || docs.length === 0) continue;
    const table = newTables.get(tableName);
    if (!table) {
      return {
        tableName,
        documentId: docs[0]._id,
        error:
          `Schema validation failed: Document with ID "${docs[0]._id}" in table "${tableName}" ` +
          `does not match the schema: table "${tableName}" holds ${docs.length} document(s) ` +
          `but is not declared in the new schema.`,
      };
    }
    const before = oldTables.get(tableName);
    if (
      oldEnforced &&
      before &&
      JSON.stringify(before.documentType) === JSON.stringify(table.documentType)
    ) {
      continue;
    }
    for (const doc of docs) {
      const problem = checkDocument(table.documentType, doc, decode, tableOf);
      if (problem) {
        return {
          tableName,
          documentId: doc._id,
          error:
            `Schema validation failed: Document with ID "${doc._id}" in table "${tableName}" ` +
            `does not match the schema: ${problem}`,
        };
      }
    }
  }
  return null;
}
