// Document ids in Convex's encoding (crates/value/src/id_v6.rs, crates/value/src/base32.rs):
//   base32( varint(table number) ++ 16-byte internal id ++ footer )
//   footer = fletcher16(everything before it) ^ version 0, little-endian
// with Crockford's lowercase alphabet and no padding. User tables are numbered from 10001,
// system tables (`_storage`, `_scheduled_functions`) from 513
// (crates/database/src/bootstrap_model/table.rs). Each deployment keeps its table numbers
// in `tables.json`, so ids keep naming the same table across restarts and code changes.
//
// The test runtime mints its own ids (`<counter><table>`) and reads the table back from
// the id text; `installIds` replaces every place an instance does that, so an id decodes to
// its table through the deployment's table numbers instead.

import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";

import { writeAtomic } from "./store.mjs";

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";
const DECODE = new Map([...ALPHABET].map((c, i) => [c, i]));
const INTERNAL_ID_LEN = 16;
const FIRST_USER_TABLE = 10001;
const FIRST_SYSTEM_TABLE = 513;
const TABLES_FILE = "tables.json";

function encodedLen(bytes) {
  return Math.floor(bytes / 5) * 8 + [0, 2, 4, 5, 7][bytes % 5];
}
const MIN_ID_LEN = encodedLen(1 + INTERNAL_ID_LEN + 2);
const MAX_ID_LEN = encodedLen(5 + INTERNAL_ID_LEN + 2);

function base32Encode(bytes) {
  let out = "";
  let acc = 0;
  let bits = 0;
  for (const byte of bytes) {
    acc = ((acc << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(acc >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(acc << (5 - bits)) & 31];
  return out;
}

function base32Decode(text) {
  const out = [];
  let acc = 0;
  let bits = 0;
  for (const c of text) {
    const v = DECODE.get(c);
    if (v === undefined) return null;
    acc = ((acc << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((acc >> (bits - 8)) & 255);
      bits -= 8;
    }
  }
  return Uint8Array.from(out);
}

function fletcher16(bytes) {
  let c0 = 0;
  let c1 = 0;
  for (const b of bytes) {
    c0 = (c0 + b) & 255;
    c1 = (c1 + c0) & 255;
  }
  return (c1 << 8) | c0;
}

function varint(n) {
  const out = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** Encodes a document id: table number (1..2^32-1) and 16 internal-id bytes. */
export function encodeId(tableNumber, internalId) {
  const body = [...varint(tableNumber), ...internalId];
  const footer = fletcher16(body);
  return base32Encode([...body, footer & 255, footer >> 8]);
}

/** Decodes an id as Convex does; null when `text` is not a canonical Convex id. */
export function decodeId(text) {
  if (typeof text !== "string" || text.length < MIN_ID_LEN || text.length > MAX_ID_LEN) return null;
  const buf = base32Decode(text);
  if (!buf) return null;
  let n = 0;
  let pos = 0;
  for (;;) {
    if (pos >= 5 || pos >= buf.length) return null;
    const byte = buf[pos];
    n += (byte & 0x7f) * 2 ** (7 * pos);
    pos += 1;
    if (byte < 0x80) break;
  }
  if (n === 0 || n > 0xffffffff) return null;
  if (buf.length !== pos + INTERNAL_ID_LEN + 2) return null;
  const footer = buf[pos + INTERNAL_ID_LEN] | (buf[pos + INTERNAL_ID_LEN + 1] << 8);
  if (fletcher16(buf.subarray(0, pos + INTERNAL_ID_LEN)) !== footer) return null;
  const internalId = buf.slice(pos, pos + INTERNAL_ID_LEN);
  if (encodeId(n, internalId) !== text) return null;
  return { tableNumber: n, internalId };
}

/** The table of an id minted by the test runtime before ids were Convex's: digits, then the table. */
function legacyTable(id) {
  const match = /^[0-9]+/.exec(id);
  if (!match || match[0].length === id.length) return null;
  return id.slice(match[0].length);
}

/** Table name <-> table number of one deployment, persisted when a `dir` is bound. */
export class TableNumbers {
  constructor(dir = null) {
    this.file = dir ? path.join(dir, TABLES_FILE) : null;
    this.byName = new Map();
    this.byNumber = new Map();
    if (this.file && fs.existsSync(this.file)) {
      const saved = JSON.parse(fs.readFileSync(this.file, "utf8"));
      for (const [name, number] of Object.entries(saved.tables ?? {})) this._set(name, number);
    }
  }

  _set(name, number) {
    this.byName.set(name, number);
    this.byNumber.set(number, name);
  }

  /** The table's number, allocating (and persisting) the next free one on first use. */
  numberFor(table) {
    let number = this.byName.get(table);
    if (number !== undefined) return number;
    number = table.startsWith("_") ? FIRST_SYSTEM_TABLE : FIRST_USER_TABLE;
    while (this.byNumber.has(number)) number += 1;
    this._set(table, number);
    if (this.file) {
      fs.mkdirSync(path.dirname(this.file), { recursive: true });
      writeAtomic(this.file, JSON.stringify({ tables: Object.fromEntries(this.byName) }));
    }
    return number;
  }

  /** The table an id belongs to, or null (legacy `<counter><table>` ids still resolve). */
  tableOf(id) {
    if (typeof id !== "string") return null;
    const decoded = decodeId(id);
    if (decoded) return this.byNumber.get(decoded.tableNumber) ?? null;
    return legacyTable(id);
  }
}

const SHARED = new Map(); // dir -> TableNumbers, so every instance of a deployment shares one

/** Binds a deployment's persisted table numbers (`<dir>/tables.json`) to an instance's db. */
export function bindTableNumbers(db, dir) {
  let tables = SHARED.get(dir);
  if (!tables) {
    tables = new TableNumbers(dir);
    SHARED.set(dir, tables);
  }
  db._tableNumbers = tables;
  return tables;
}

/** The table of `id` in the deployment whose db is `db`. */
export function tableOfId(db, id) {
  return (db._tableNumbers ?? new TableNumbers()).tableOf(id);
}

/** Replaces `v.id(...)` with `v.string()` so the test runtime's own checks accept Convex ids. */
function stripIds(validator) {
  if (!validator || typeof validator !== "object") return validator;
  switch (validator.type) {
    case "id":
      return { type: "string" };
    case "array":
      return { ...validator, value: stripIds(validator.value) };
    case "union":
      return { ...validator, value: validator.value.map(stripIds) };
    case "record":
      return {
        ...validator,
        keys: stripIds(validator.keys),
        values: { ...validator.values, fieldType: stripIds(validator.values.fieldType) },
      };
    case "object": {
      const value = {};
      for (const [k, f] of Object.entries(validator.value)) value[k] = { ...f, fieldType: stripIds(f.fieldType) };
      return { ...validator, value };
    }
    default:
      return validator;
  }
}

const WRAPPED = new WeakMap(); // module namespace -> module whose functions export id-free validators

function wrapFunction(fn) {
  if (!fn || (typeof fn !== "function" && typeof fn !== "object")) return fn;
  if (!(fn.isQuery || fn.isMutation || fn.isAction) || typeof fn.exportArgs !== "function") return fn;
  const wrapper = Object.create(fn);
  const args = JSON.stringify(stripIds(JSON.parse(fn.exportArgs())));
  wrapper.exportArgs = () => args;
  if (typeof fn.exportReturns === "function") {
    const raw = fn.exportReturns();
    const returns = raw == null ? raw : JSON.stringify(stripIds(JSON.parse(raw)));
    wrapper.exportReturns = () => returns;
  }
  return wrapper;
}

function wrapModule(ns) {
  if (!ns || typeof ns !== "object") return ns;
  let out = WRAPPED.get(ns);
  if (!out) {
    out = {};
    for (const [name, value] of Object.entries(ns)) out[name] = wrapFunction(value);
    WRAPPED.set(ns, out);
  }
  return out;
}

/**
 * Makes a test-runtime instance (`{t, global, db}` from `createInstance`) mint and read
 * Convex ids. Until `bindTableNumbers` is called the table numbers live in memory only.
 */
export function installIds(inst) {
  const db = inst.db;
  if (!db._tableNumbers) db._tableNumbers = new TableNumbers();
  const tableOf = (id) => db._tableNumbers.tableOf(id);

  db._generateId = (table) => {
    db._nextDocId += 1;
    return encodeId(db._tableNumbers.numberFor(table), randomBytes(INTERNAL_ID_LEN));
  };

  db._validateId = (expectedTableName, id) => {
    if (typeof id !== "string") {
      throw new Error(`Invalid argument \`id\`, expected string but got '${typeof id}': ${id}`);
    }
    if (expectedTableName === undefined) return;
    if (typeof expectedTableName !== "string") {
      throw new Error(
        `Invalid argument \`tableName\`, expected string but got '${typeof expectedTableName}': ${expectedTableName}`,
      );
    }
    const actual = tableOf(id);
    if (actual === null) throw new Error(`Unable to decode ID: ${id}`);
    if (actual !== expectedTableName) {
      throw new Error(`Invalid argument \`id\`, expected ID in table '${expectedTableName}' but got ID in table '${actual}'`);
    }
  };

  // The runtime files committed documents under the table it reads from the id text;
  // move each committed id to the table its number names.
  const commit = db.commit.bind(db);
  db.commit = (commitTs) => {
    const ids = db._writes.length === 1 ? Object.keys(db._writes[0]) : [];
    commit(commitTs);
    for (const id of ids) {
      const guessed = legacyTable(id);
      const table = tableOf(id);
      if (guessed === table) continue;
      const wrong = db._tableIds.get(guessed);
      if (wrong) {
        wrong.delete(id);
        if (wrong.size === 0) db._tableIds.delete(guessed);
      }
      if (db._documents[id] !== undefined) {
        if (!db._tableIds.has(table)) db._tableIds.set(table, new Set());
        db._tableIds.get(table).add(id);
      } else {
        db._tableIds.get(table)?.delete(id);
      }
    }
  };

  db._iterateDocs = (tableName, callback) => {
    const ids = new Set(db._tableIds.get(tableName));
    for (const level of db._writes) {
      for (const id of Object.keys(level)) if (tableOf(id) === tableName) ids.add(id);
    }
    for (const id of ids) {
      const document = db.get(tableName, id);
      if (document !== null) callback(document);
    }
  };

  // patch/replace name the table to validate against from the id text; route it.
  for (const method of ["patch", "replace"]) {
    const original = db[method].bind(db);
    db[method] = (tableName, id, value) => {
      const table = typeof id === "string" ? tableOf(id) : null;
      const validate = db._validate;
      db._validate = (_guessed, doc) => validate.call(db, table, doc);
      try {
        return original(tableName, id, value);
      } finally {
        db._validate = validate;
      }
    };
  }

  const syscall = inst.global.syscall;
  inst.global.syscall = (op, jsonArgs) => {
    if (op !== "1.0/db/normalizeId") return syscall(op, jsonArgs);
    const { table, idString } = JSON.parse(jsonArgs);
    return JSON.stringify({ id: tableOf(idString) === table ? idString : null });
  };

  const component = inst.global.components[""];
  const modules = component.modules;
  component.modules = async (modulePath) => wrapModule(await modules(modulePath));
  return inst;
}
