// Who is calling a function, as Convex decides it (crates/authentication/src/lib.rs,
// crates/local_backend/src/authentication.rs):
//   - `Authorization: Convex <admin key>`: an admin, who may also run internal functions;
//   - `Authorization: Bearer <JWT>`: a user, verified against the providers of the
//     deployment's `auth.config.ts` — OIDC providers (`{domain, applicationID}`: the token's
//     `iss` is the domain, its `aud` holds the application id, the keys come from
//     `<domain>/.well-known/openid-configuration` -> `jwks_uri`) and `customJwt` providers
//     (`{type: "customJwt", issuer, jwks, algorithm, applicationID?}`); RS256 and EdDSA;
//   - no header: anonymous, which may run public functions.
// Refused tokens are answered 401 with Convex's codes (`InvalidAuthHeader`,
// `NoAuthProvider`, `Unauthenticated`) and messages.

import { createPublicKey, verify } from "node:crypto";

import { HttpError } from "./errors.mjs";

const CACHE_MS = 5 * 60 * 1000;
const FETCH_TIMEOUT_MS = 10_000;
const CLOCK_SKEW_S = 5;
const jsonCache = new Map(); // url -> {at, value}

/** The caller of a request: `{admin: true}`, `{admin: false, token}` or anonymous. */
export function callerFromHeader(header) {
  if (typeof header !== "string" || header.trim() === "") return { admin: false, token: null };
  const match = /^\s*(\S+)\s+(.+?)\s*$/.exec(header);
  if (match && match[1].toLowerCase() === "bearer") return { admin: false, token: match[2] };
  throw new HttpError(401, "InvalidAuthHeader", "Header must begin with `bearer `");
}

function unauthenticated(code, message) {
  return new HttpError(401, code, message);
}

function base64UrlJson(part) {
  return JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
}

function parseJwt(token) {
  const parts = token.split(".");
  if (parts.length !== 3) throw new Error("not three parts");
  return {
    header: base64UrlJson(parts[0]),
    payload: base64UrlJson(parts[1]),
    signed: Buffer.from(`${parts[0]}.${parts[1]}`),
    signature: Buffer.from(parts[2], "base64url"),
  };
}

const trimSlash = (s) => String(s ?? "").replace(/\/+$/, "");

function audiences(payload) {
  if (payload.aud === undefined || payload.aud === null) return [];
  return Array.isArray(payload.aud) ? payload.aud.map(String) : [String(payload.aud)];
}

function withProtocol(issuer) {
  return /^https?:\/\//.test(issuer) ? issuer : `https://${issuer}`;
}

function providerMatches(provider, issuer, auds) {
  if (provider.type === "customJwt") {
    if (trimSlash(withProtocol(issuer)) !== trimSlash(provider.issuer)) return false;
    return !provider.applicationID || auds.includes(provider.applicationID);
  }
  return trimSlash(provider.domain) === trimSlash(issuer) && auds.includes(provider.applicationID);
}

function describeProviders(providers) {
  if (providers.length === 0) {
    return "No auth provider found matching the given token (no providers configured). Check convex/auth.config.ts.";
  }
  const list = providers.map((p) =>
    p.type === "customJwt"
      ? `CustomJWT(issuer=${p.issuer}, app_id=${p.applicationID ?? "none"})`
      : `OIDC(domain=${p.domain}, app_id=${p.applicationID})`,
  );
  return (
    "No auth provider found matching the given token. Check that your JWT's issuer and audience " +
    `match one of your configured providers: [${list.join(", ")}]`
  );
}

async function fetchJson(url, { fresh = false } = {}) {
  const hit = jsonCache.get(url);
  if (!fresh && hit && Date.now() - hit.at < CACHE_MS) return hit.value;
  if (url.startsWith("data:")) {
    const comma = url.indexOf(",");
    const meta = url.slice(5, comma);
    const data = url.slice(comma + 1);
    const text = meta.endsWith(";base64") ? Buffer.from(data, "base64").toString("utf8") : decodeURIComponent(data);
    return JSON.parse(text);
  }
  const res = await fetch(url, { headers: { accept: "application/json" }, signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
  if (res.status !== 200) {
    const err = new Error(`HTTP ${res.status} ${res.statusText}`);
    err.status = res.status;
    throw err;
  }
  const value = await res.json();
  jsonCache.set(url, { at: Date.now(), value });
  return value;
}

const ALGORITHMS = { RS256: "RSA-SHA256", EdDSA: null };

function verifySignature(jwt, jwks, allowed) {
  const alg = jwt.header.alg;
  if (!allowed.includes(alg) || !(alg in ALGORITHMS)) return false;
  const keys = (jwks?.keys ?? []).filter((k) => !jwt.header.kid || k.kid === jwt.header.kid);
  for (const jwk of keys) {
    try {
      const key = createPublicKey({ key: jwk, format: "jwk" });
      if (verify(ALGORITHMS[alg], jwt.signed, key, jwt.signature)) return true;
    } catch {
      // A key of another type or a malformed key: try the next one.
    }
  }
  return false;
}

function claimsValid(payload) {
  const now = Date.now() / 1000;
  if (typeof payload.exp !== "number" || payload.exp + CLOCK_SKEW_S < now) return false;
  if (typeof payload.nbf === "number" && payload.nbf - CLOCK_SKEW_S > now) return false;
  return typeof payload.sub === "string" && payload.sub.length > 0;
}

// UserIdentity attribute <- JWT claim (npm-packages/convex/src/server/authentication.ts).
const ATTRIBUTE_BY_CLAIM = {
  sub: "subject",
  iss: "issuer",
  name: "name",
  given_name: "givenName",
  family_name: "familyName",
  nickname: "nickname",
  preferred_username: "preferredUsername",
  profile: "profileUrl",
  picture: "pictureUrl",
  email: "email",
  email_verified: "emailVerified",
  gender: "gender",
  birthdate: "birthday",
  zoneinfo: "timezone",
  locale: "language",
  phone_number: "phoneNumber",
  phone_number_verified: "phoneNumberVerified",
  address: "address",
  updated_at: "updatedAt",
};
const REGISTERED = new Set(["aud", "exp", "iat", "nbf", "jti", "azp", "nonce", "auth_time", "at_hash", "c_hash"]);

/** The identity `ctx.auth.getUserIdentity()` returns for verified claims. */
export function identityFromClaims(payload) {
  const identity = {};
  for (const [claim, value] of Object.entries(payload)) {
    if (REGISTERED.has(claim) || value === null || value === undefined) continue;
    identity[ATTRIBUTE_BY_CLAIM[claim] ?? claim] = value;
  }
  identity.tokenIdentifier = `${payload.iss}|${payload.sub}`;
  return identity;
}

/**
 * Verifies a user JWT against a deployment's providers (the `providers` of its
 * `auth.config` default export). Returns the identity, or throws an HttpError (401) with
 * Convex's code and message.
 */
export async function verifyUserToken(token, providers) {
  let jwt;
  try {
    jwt = parseJwt(token);
  } catch {
    throw unauthenticated(
      "InvalidAuthHeader",
      "Could not parse JWT payload. Check that the token is a valid JWT format with three base64-encoded parts separated by dots.",
    );
  }
  const issuer = jwt.payload.iss;
  if (typeof issuer !== "string" || !issuer) {
    throw unauthenticated(
      "InvalidAuthHeader",
      "Missing issuer claim ('iss') in JWT payload. The JWT must include an 'iss' claim that matches one of your configured auth providers.",
    );
  }
  const list = Array.isArray(providers) ? providers : [];
  const provider = list.find((p) => providerMatches(p, issuer, audiences(jwt.payload)));
  if (!provider) throw unauthenticated("NoAuthProvider", describeProviders(list));

  if (provider.type === "customJwt") {
    let jwks;
    try {
      jwks = await fetchJson(provider.jwks);
      if (!verifySignature(jwt, jwks, [provider.algorithm ?? "RS256"])) {
        jwks = await fetchJson(provider.jwks, { fresh: true });
      }
    } catch (err) {
      throw unauthenticated(
        "InvalidAuthHeader",
        `Could not fetch JWKS from URL '${provider.jwks}': ${err?.message ?? err}. Check that the URL is correct and accessible.`,
      );
    }
    if (!verifySignature(jwt, jwks, [provider.algorithm ?? "RS256"])) {
      throw unauthenticated(
        "InvalidAuthHeader",
        jwt.header.kid
          ? `Could not decode token. The JWT's 'kid' (key ID) header is '${jwt.header.kid}', does this key match any key in the provider's JWKS?`
          : "Could not decode token. JWT may be missing a 'kid' (key ID) header.",
      );
    }
    if (!claimsValid(jwt.payload)) {
      throw unauthenticated("InvalidAuthHeader", "Could not validate token: the token has expired or has no subject");
    }
    return identityFromClaims(jwt.payload);
  }

  let jwks;
  try {
    const config = await fetchJson(`${trimSlash(issuer)}/.well-known/openid-configuration`);
    if (trimSlash(config.issuer) !== trimSlash(issuer)) throw new Error(`issuer ${config.issuer} does not match`);
    jwks = await fetchJson(config.jwks_uri);
    if (!verifySignature(jwt, jwks, ["RS256", "EdDSA"])) jwks = await fetchJson(config.jwks_uri, { fresh: true });
  } catch (err) {
    throw new HttpError(400, "AuthProviderDiscoveryFailed", `Auth provider discovery of ${issuer} failed: ${err?.message ?? err}`);
  }
  if (!verifySignature(jwt, jwks, ["RS256", "EdDSA"]) || !claimsValid(jwt.payload)) {
    throw unauthenticated(
      "Unauthenticated",
      "Could not verify OIDC token claim. Check that the token signature is valid and the token hasn't expired.",
    );
  }
  return identityFromClaims(jwt.payload);
}

/** The providers of a loaded module set's `auth.config.js` (empty when it has none). */
export function providersOf(loadedSet) {
  const providers = loadedSet?.namespaces?.["auth.config.js"]?.default?.providers;
  return Array.isArray(providers) ? providers : [];
}
