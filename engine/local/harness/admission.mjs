// What a function call must pass before it runs, as on Convex: who may call it (internal
// functions only for admins: crates/udf/src/validation.rs `missing_or_internal_error`),
// the caller's identity (auth.mjs), the arguments' value limits (limits.mjs) and the
// function's argument validator, answered with Convex's `ArgumentValidationError` texts
// (validator.mjs). Runs where the runtime instances live (the worker threads).

import { providersOf, verifyUserToken } from "./auth.mjs";
import { tableOfId } from "./ids.mjs";
import { argumentsProblem, resultProblem } from "./limits.mjs";
import { argumentsValidationProblem } from "./validator.mjs";

const error = (errorMessage) => ({ response: { status: "error", errorMessage } });
const argsValidators = new WeakMap(); // registered function -> its parsed `args` validator

function argsValidatorOf(fn) {
  if (typeof fn.exportArgs !== "function") return null;
  if (!argsValidators.has(fn)) argsValidators.set(fn, JSON.parse(fn.exportArgs()));
  return argsValidators.get(fn);
}

/**
 * Admits one call. `caller`: `{admin, token}` from the HTTP front (absent = admin, for
 * callers inside the harness). Returns `{response}` (a function error to answer as is) or
 * `{accessor}`: the runtime accessor to run the function with (`inst.t`, or
 * `inst.t.withIdentity(...)` for a verified user). Throws an HttpError for a refused token.
 */
export async function admitCall({ fn, canonical, decoded, caller, inst, loadedSet, lib }) {
  const admin = caller === undefined || caller === null || caller.admin === true;
  const udfPath = canonical.replace(/:/, ".js:");
  if (!admin && fn.isInternal) return error(`Could not find public function for '${canonical}'.`);
  const sizeProblem = argumentsProblem(udfPath, decoded);
  if (sizeProblem) return error(sizeProblem);
  const validator = argsValidatorOf(fn);
  if (validator) {
    const problem = argumentsValidationProblem(validator, decoded, lib.jsonToConvex, (id) => tableOfId(inst.db, id));
    if (problem) return error(problem);
  }
  if (admin && caller?.actingAs && typeof caller.actingAs === "object") {
    return { accessor: inst.t.withIdentity(caller.actingAs) };
  }
  if (!admin && caller.token) {
    const identity = await verifyUserToken(caller.token, providersOf(loadedSet));
    return { accessor: inst.t.withIdentity(identity) };
  }
  return { accessor: inst.t };
}

/** Convex's limit on a function's return value; null or the function error to answer. */
export function checkResult(canonical, value) {
  const problem = resultProblem(canonical.replace(/:/, ".js:"), value);
  return problem ? { status: "error", errorMessage: problem } : null;
}
