// How Convex writes values as text: floats in JSON responses (serde_json, shortest
// round-trip digits in ryu's layout: whole numbers keep ".0", so clients that tell ints from
// floats — the Python client — read a float64 back), and the `Display` rendering used inside
// error messages (crates/value/src/lib.rs `impl Display for ConvexValue`).

/** Shortest round-trip digits and decimal exponent of a finite, non-zero |v|: v = 0.DIGITS × 10^point. */
function digitsOf(v) {
  const [mantissa, exp] = Math.abs(v).toExponential().split("e");
  const digits = mantissa.replace(".", "");
  return { digits, point: Number(exp) + 1 };
}

/** A finite float as serde_json writes it (ryu): 1 -> "1.0", 1e16 -> "1e16", 1e-7 -> "1e-7". */
export function formatFloat(v) {
  if (v === 0) return Object.is(v, -0) ? "-0.0" : "0.0";
  const sign = v < 0 ? "-" : "";
  const { digits, point } = digitsOf(v);
  const len = digits.length;
  const k = point - len;
  let body;
  if (k >= 0 && point <= 16) body = `${digits}${"0".repeat(k)}.0`;
  else if (point > 0 && point <= 16) body = `${digits.slice(0, point)}.${digits.slice(point)}`;
  else if (point > -5 && point <= 0) body = `0.${"0".repeat(-point)}${digits}`;
  else if (len === 1) body = `${digits}e${point - 1}`;
  else body = `${digits[0]}.${digits.slice(1)}e${point - 1}`;
  return sign + body;
}

/** A float as Rust's `{:?}` writes it (inside error messages): 1.0, 0.5, 1e16, NaN, inf. */
export function debugFloat(v) {
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
  if (v === 0) return Object.is(v, -0) ? "-0.0" : "0.0";
  const abs = Math.abs(v);
  const sign = v < 0 ? "-" : "";
  const { digits, point } = digitsOf(v);
  if (abs < 1e-4 || abs >= 1e16) {
    const rest = digits.slice(1);
    return `${sign}${digits[0]}${rest ? `.${rest}` : ""}e${point - 1}`;
  }
  if (point <= 0) return `${sign}0.${"0".repeat(-point)}${digits}`;
  if (point >= digits.length) return `${sign}${digits}${"0".repeat(point - digits.length)}.0`;
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

/**
 * JSON text of a function result (`value` / `errorData` after `encodeResult`): every
 * number there is a float64 (int64s are strings or `$integer` objects by then), so each is
 * written with its ".0" as Convex does.
 */
export function floatJson(value) {
  if (value === null || value === undefined) return "null";
  switch (typeof value) {
    case "number":
      return Number.isFinite(value) ? formatFloat(value) : "null";
    case "string":
    case "boolean":
      return JSON.stringify(value);
    case "object": {
      if (Array.isArray(value)) return `[${value.map(floatJson).join(",")}]`;
      const parts = [];
      for (const [k, v] of Object.entries(value)) {
        if (v !== undefined) parts.push(`${JSON.stringify(k)}:${floatJson(v)}`);
      }
      return `{${parts.join(",")}}`;
    }
    default:
      return "null";
  }
}

/** A function-call response body (`{status, value | errorMessage, errorData?}`) as JSON text. */
export function functionResponseJson(body) {
  const parts = [];
  for (const [k, v] of Object.entries(body)) {
    if (v === undefined) continue;
    const text = k === "value" || k === "errorData" ? floatJson(v) : JSON.stringify(v);
    parts.push(`${JSON.stringify(k)}:${text}`);
  }
  return `{${parts.join(",")}}`;
}

/** Rust's `{:?}` of a string: double quotes, escapes for quotes, backslashes and controls. */
function debugString(s) {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\0") out += "\\0";
    else if (c < 0x20 || c === 0x7f) out += `\\u{${c.toString(16)}}`;
    else out += ch;
  }
  return `${out}"`;
}

/** A Convex value as the backend renders it in messages: `{a: "x", n: 1.0, big: 5}`. */
export function displayValue(v) {
  if (v === null || v === undefined) return "null";
  switch (typeof v) {
    case "bigint":
      return v.toString();
    case "number":
      return debugFloat(v);
    case "boolean":
      return String(v);
    case "string":
      return debugString(v);
    default:
      break;
  }
  if (v instanceof ArrayBuffer) return `b${debugString(Buffer.from(v).toString("base64"))}`;
  if (Array.isArray(v)) return `[${v.map(displayValue).join(", ")}]`;
  const keys = Object.keys(v).filter((k) => v[k] !== undefined).sort();
  return `{${keys.map((k) => `${k}: ${displayValue(v[k])}`).join(", ")}}`;
}
