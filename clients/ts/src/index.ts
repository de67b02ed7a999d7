// A small typed client for the byod service's /v1 API, for app backends (Node 20+: the
// global fetch). Types come from the service's OpenAPI (./schema.d.ts, generated); every
// refusal is a ByodApiError carrying the service's {code, message} (and field, status,
// Retry-After). The API token is sent as a Bearer token and never appears in an error.
import type { components } from "./schema.js";

type Schemas = components["schemas"];
export type UserStatus = Schemas["UserStatus"];
export type AccessInfo = Schemas["AccessInfo"];
export type CredentialTest = Schemas["CredentialTest"];
export type Job = Schemas["JobInfo"];
export type Blocker = Schemas["Blocker"];
export type BlockerRetry = Schemas["BlockerRetry"];
export type Notice = Schemas["Notice"];
export type PageToken = Schemas["PageToken"];
export type RunResult = Schemas["RunResult"];
export type ErrorBody = Schemas["ErrorBody"];
export type FunctionKind = Schemas["RunRequest"]["kind"];
export type DisconnectMode = Schemas["DisconnectRequest"]["mode"];

/** What the service answered instead of a result (or why no answer came). */
export class ByodApiError extends Error {
  /** The service's error code (`blocked`, `unknown_user`, ...), or `network` / `timeout`. */
  readonly code: string;
  /** The HTTP status (0 when no answer came). */
  readonly status: number;
  /** The request field the error is about, when the service names one. */
  readonly field: string | null;
  /** Seconds to wait before trying again (from Retry-After), when the service says. */
  readonly retryAfter: number | null;

  constructor(status: number, body: ErrorBody, retryAfter: number | null = null) {
    super(body.message);
    this.name = "ByodApiError";
    this.code = body.code;
    this.status = status;
    this.field = body.field ?? null;
    this.retryAfter = retryAfter;
  }

  /** The `{code, message}` the service sent. */
  toJSON(): { code: string; message: string; status: number; field: string | null } {
    return { code: this.code, message: this.message, status: this.status, field: this.field };
  }
}

export interface ByodClientOptions {
  /** The service's base URL, e.g. `https://byod.internal.example.com`. */
  baseUrl: string;
  /** An API token (`byod tokens create`), sent as `Authorization: Bearer …`. */
  token: string;
  /** Per-request timeout in milliseconds (default 30 000). */
  timeoutMs?: number;
  /** Another fetch (tests, proxies); the global one by default. */
  fetch?: typeof fetch;
}

export interface WaitOptions {
  /** Give up after this many milliseconds (default 300 000): a `timeout` ByodApiError. */
  timeoutMs?: number;
  /** Poll every this many milliseconds (default 500). */
  intervalMs?: number;
  /** Called with every state of the job seen while waiting. */
  onProgress?: (job: Job) => void;
}

const FINISHED = new Set<Job["state"]>(["succeeded", "failed"]);

function errorBody(value: unknown): ErrorBody | null {
  if (typeof value !== "object" || value === null) return null;
  const error = (value as { error?: unknown }).error;
  if (typeof error !== "object" || error === null) return null;
  const { code, message, field } = error as Record<string, unknown>;
  if (typeof code !== "string" || typeof message !== "string") return null;
  return { code, message, field: typeof field === "string" ? field : null };
}

/** The byod service's settings API, blocker and data plane. */
export class ByodClient {
  private readonly baseUrl: string;
  private readonly token: string;
  private readonly timeoutMs: number;
  private readonly fetchImpl: typeof fetch;

  constructor(options: ByodClientOptions) {
    if (!/^https?:\/\//.test(options.baseUrl)) {
      throw new TypeError("baseUrl must be an http:// or https:// URL");
    }
    if (!options.token) throw new TypeError("token is required (byod tokens create)");
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.token}`,
      accept: "application/json",
    };
    if (body !== undefined) headers["content-type"] = "application/json";
    let response: Response;
    try {
      response = await this.fetchImpl(this.baseUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (error) {
      const timedOut = error instanceof Error && error.name === "TimeoutError";
      throw new ByodApiError(0, {
        code: timedOut ? "timeout" : "network",
        message: timedOut
          ? `the service did not answer ${method} ${path} within ${this.timeoutMs} ms`
          : `could not reach the service for ${method} ${path}`,
      });
    }
    const text = await response.text();
    let parsed: unknown = undefined;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
    }
    if (!response.ok) {
      const retry = Number(response.headers.get("retry-after"));
      throw new ByodApiError(
        response.status,
        errorBody(parsed) ?? {
          code: "http_error",
          message: `the service answered HTTP ${response.status} to ${method} ${path}`,
        },
        Number.isFinite(retry) && retry > 0 ? retry : null,
      );
    }
    return parsed as T;
  }

  private user(userId: string, rest = ""): string {
    return `/v1/users/${encodeURIComponent(userId)}${rest}`;
  }

  /** Connection and deployment status, progress, last test, version, journal. */
  status(userId: string): Promise<UserStatus> {
    return this.request("GET", this.user(userId));
  }

  /** Whether the user may connect (gate, kill switch) and where to upgrade. */
  access(userId: string): Promise<AccessInfo> {
    return this.request("GET", this.user(userId, "/access"));
  }

  /** Test credentials without saving anything ("Test Connection"). */
  testCredentials(url: string, deployKey: string, userId?: string): Promise<CredentialTest> {
    return this.request("POST", "/v1/credentials/test", {
      url,
      deploy_key: deployKey,
      ...(userId === undefined ? {} : { user_id: userId }),
    });
  }

  /** Save & Deploy: a background job (see `job`, `waitForJob`). */
  connect(
    userId: string,
    url: string,
    deployKey: string,
    options: { copyFromMain?: boolean } = {},
  ): Promise<Job> {
    return this.request("POST", this.user(userId, "/connect"), {
      url,
      deploy_key: deployKey,
      copy_from_main: options.copyFromMain ?? false,
    });
  }

  /** Retry a failed connect (resumes where it stopped). */
  retry(userId: string): Promise<Job> {
    return this.request("POST", this.user(userId, "/retry"));
  }

  /** Replace the stored URL and deploy key (tested first), as a job. */
  updateCredentials(userId: string, url: string, deployKey: string): Promise<Job> {
    return this.request("PUT", this.user(userId, "/credentials"), { url, deploy_key: deployKey });
  }

  /** Disconnect: keep the data, migrate it back to main, or delete it (`confirm` needed). */
  disconnect(userId: string, mode: DisconnectMode, confirm = false): Promise<Job> {
    return this.request("POST", this.user(userId, "/disconnect"), { mode, confirm });
  }

  /** One job's state, stage and progress. */
  job(jobId: string): Promise<Job> {
    return this.request("GET", `/v1/jobs/${encodeURIComponent(jobId)}`);
  }

  /** Poll a job until it succeeded or failed (a failed job is returned, not thrown). */
  async waitForJob(jobId: string, options: WaitOptions = {}): Promise<Job> {
    const deadline = Date.now() + (options.timeoutMs ?? 300_000);
    const interval = options.intervalMs ?? 500;
    for (;;) {
      const current = await this.job(jobId);
      options.onProgress?.(current);
      if (FINISHED.has(current.state)) return current;
      if (Date.now() + interval > deadline) {
        throw new ByodApiError(0, {
          code: "timeout",
          message: `job ${jobId} did not finish in time (last state ${current.state})`,
        });
      }
      await new Promise((done) => setTimeout(done, interval));
    }
  }

  /** `{blocked, reason, since, retry_allowed}`: cheap enough for every page load. */
  blocker(userId: string): Promise<Blocker> {
    return this.request("GET", this.user(userId, "/blocker"));
  }

  /** Re-test a blocked user's deployment and unblock it when it answers. */
  retryBlocked(userId: string): Promise<BlockerRetry> {
    return this.request("POST", this.user(userId, "/blocker/retry"));
  }

  /** A short message the app can show this user, or `{notice: null}`. */
  notice(userId: string): Promise<Notice> {
    return this.request("GET", this.user(userId, "/notice"));
  }

  /** Call an app function, routed to main or the user's deployment by its tables. */
  async run<T = unknown>(
    userId: string,
    kind: FunctionKind,
    path: string,
    args: Record<string, unknown> = {},
  ): Promise<T> {
    const result = await this.request<RunResult>("POST", this.user(userId, "/run"), {
      kind,
      path,
      args,
    });
    return result.value as T;
  }

  /** A short-lived signed link to the user's settings page (for a signed-in user). */
  pageToken(userId: string): Promise<PageToken> {
    return this.request("POST", this.user(userId, "/page-token"));
  }
}
