// Validates Convex values against the validator JSON that `defineSchema(...).export()`
// emits. The harness needs its own validator because the test runtime skips `record`
// validators and never re-checks existing documents when a schema changes.

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

/** Short human rendering of a validator, e.g. `v.union(v.string(), v.null())`. */
export function describeValidator(validator) {
  switch (validator.type) {
    case "id":
      return `v.id(${JSON.stringify(validator.tableName)})`;
    case "literal":
      return `v.literal(${JSON.stringify(validator.value)})`;
    case "array":
      return `v.array(${describeValidator(validator.value)})`;
    case "record":
      return `v.record(${describeValidator(validator.keys)}, ${describeValidator(validator.values.fieldType)})`;
    case "union":
      return `v.union(${validator.value.map(describeValidator).join(", ")})`;
    case "object": {
      const fields = Object.entries(validator.value).map(([k, f]) => {
        const inner = describeValidator(f.fieldType);
        return `${k}: ${f.optional ? `v.optional(${inner})` : inner}`;
      });
      return `v.object({${fields.join(", ")}})`;
    }
    case "number":
      return "v.float64()";
    case "bigint":
      return "v.int64()";
    default:
      return `v.${validator.type}()`;
  }
}

function describeValue(value) {
  if (typeof value === "bigint") return `${value}n`;
  if (value instanceof ArrayBuffer) return `<bytes ${value.byteLength}>`;
  if (value === undefined) return "undefined";
  let text;
  try {
    text = JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? `${v}n` : v));
  } catch {
    text = String(value);
  }
  if (text === undefined) text = String(value);
  return text.length > 200 ? `${text.slice(0, 197)}...` : text;
}

function mismatch(path, value, validator) {
  return (
    `value at ${path || "(root)"} does not match its validator: ` +
    `got ${describeValue(value)}, expected ${describeValidator(validator)}`
  );
}

function literalValue(jsonValue, decode) {
  // Literals are exported in Convex JSON (an int64 is `{"$integer": ...}`).
  if (jsonValue !== null && typeof jsonValue === "object") return decode(jsonValue);
  return jsonValue;
}

/**
 * Returns null when `value` satisfies `validator`, else a message naming the path.
 * `decode` is `jsonToConvex` (used for int64 literals).
 */
export function checkValue(validator, value, path, decode) {
  switch (validator.type) {
    case "any":
      return null;
    case "null":
      return value === null ? null : mismatch(path, value, validator);
    case "number":
    case "float64":
      return typeof value === "number" ? null : mismatch(path, value, validator);
    case "bigint":
    case "int64":
    case "commitTs":
      return typeof value === "bigint" ? null : mismatch(path, value, validator);
    case "boolean":
      return typeof value === "boolean" ? null : mismatch(path, value, validator);
    case "string":
      return typeof value === "string" ? null : mismatch(path, value, validator);
    case "bytes":
      return value instanceof ArrayBuffer ? null : mismatch(path, value, validator);
    case "literal": {
      const expected = literalValue(validator.value, decode);
      return value === expected ? null : mismatch(path, value, validator);
    }
    case "id":
      if (typeof value !== "string" || tableNameFromId(value) !== validator.tableName) {
        return mismatch(path, value, validator);
      }
      return null;
    case "array": {
      if (!Array.isArray(value)) return mismatch(path, value, validator);
      for (let i = 0; i < value.length; i++) {
        const problem = checkValue(validator.value, value[i], `${path}[${i}]`, decode);
        if (problem) return problem;
      }
      return null;
    }
    case "union": {
      for (const member of validator.value) {
        if (checkValue(member, value, path, decode) === null) return null;
      }
      return mismatch(path, value, validator);
    }
    case "record": {
      if (!isPlainObject(value)) return mismatch(path, value, validator);
      for (const [key, item] of Object.entries(value)) {
        if (item === undefined) continue;
        if (checkValue(validator.keys, key, `${path}{key ${JSON.stringify(key)}}`, decode)) {
          return `record key ${JSON.stringify(key)} at ${path || "(root)"} does not match ${describeValidator(validator.keys)}`;
        }
        const problem = checkValue(validator.values.fieldType, item, `${path}.${key}`, decode);
        if (problem) return problem;
      }
      return null;
    }
    case "object": {
      if (!isPlainObject(value)) return mismatch(path, value, validator);
      for (const [key, field] of Object.entries(validator.value)) {
        const item = value[key];
        if (item === undefined) {
          if (!field.optional) {
            return `object at ${path || "(root)"} is missing the required field \`${key}\` (${describeValidator(field.fieldType)})`;
          }
          continue;
        }
        const problem = checkValue(field.fieldType, item, `${path}.${key}`, decode);
        if (problem) return problem;
      }
      for (const key of Object.keys(value)) {
        if (value[key] !== undefined && !(key in validator.value)) {
          return `object at ${path || "(root)"} has the field \`${key}\`, which its validator does not declare`;
        }
      }
      return null;
    }
    default:
      return `unsupported validator type ${JSON.stringify(validator.type)} at ${path || "(root)"}`;
  }
}

/** Checks a stored document (system fields included) against a table's `documentType`. */
export function checkDocument(documentType, doc, decode) {
  if (!documentType || documentType.type === "any") return null;
  const fields = {};
  for (const [k, v] of Object.entries(doc)) if (!SYSTEM_FIELDS.has(k)) fields[k] = v;
  return checkValue(documentType, fields, "", decode);
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
 */
export function validateSchemaChange(oldSchema, newSchema, docsByTable, decode) {
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
      const problem = checkDocument(table.documentType, doc, decode);
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
