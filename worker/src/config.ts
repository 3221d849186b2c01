// What the Worker passes to each container as environment variables, built
// from the Worker's vars and secrets (wrangler.jsonc, `wrangler secret put`).
// Pure, so tests can check it without a container.

/** The port xetproxy serves on inside the container (the image's EXPOSE). */
export const CONTAINER_PORT = 8080;

/**
 * Cloudflare sends SIGTERM and kills the container 15 minutes later. The
 * server's drain deadline must end before that, so in-flight downloads
 * finish and the process exits on its own.
 */
export const DEFAULT_DRAIN_TIMEOUT = "14m";
export const MAX_DRAIN_SECONDS = 15 * 60 - 1;

/** Idle time before a container is stopped (its in-memory cache goes with it). */
export const DEFAULT_SLEEP_AFTER = "15m";

/**
 * The Worker's environment: bindings, vars (wrangler.jsonc) and secrets.
 * Every var is optional; unset means the server's own default.
 */
export interface WorkerVars {
  /** Routing instance count (default 4); keep it <= max_instances. */
  XETPROXY_INSTANCES?: string;
  /** Container idle time before sleep, e.g. "15m" (default). */
  SLEEP_AFTER?: string;
  /** Secret. When set, /_container/* needs the header X-Admin-Token with this value. */
  ADMIN_TOKEN?: string;

  /** Secret. Server Hugging Face token; used only with XETPROXY_SERVER_TOKEN_ENABLED. */
  HF_TOKEN?: string;
  /** "true" lets callers with a proxy API key borrow HF_TOKEN. */
  XETPROXY_SERVER_TOKEN_ENABLED?: string;
  /** Secret. Comma-separated proxy API keys. */
  XETPROXY_API_KEYS?: string;
  /** Comma-separated repo globs the proxy serves only, e.g. "model/meta-llama/*,dataset/*". */
  XETPROXY_ALLOW?: string;
  /** Comma-separated repo globs the proxy refuses; wins over XETPROXY_ALLOW. */
  XETPROXY_DENY?: string;
  /** Secret. Key of the caller digest in download log lines (at least 16 characters). */
  XETPROXY_AUDIT_KEY?: string;
  /** Drain deadline after SIGTERM, Go duration (default 14m, capped below 15m). */
  XETPROXY_DRAIN_TIMEOUT?: string;
  HF_ENDPOINT?: string;
  XETPROXY_LOG_FORMAT?: string;
  XETPROXY_LOG_LEVEL?: string;
  XETPROXY_MAX_DOWNLOADS?: string;
  XETPROXY_MAX_BUFFER?: string;
  XETPROXY_CACHE_DIR?: string;
  XETPROXY_CACHE_SIZE?: string;
  /** In-process chunk cache in front of the disk, e.g. "512MiB" (server default: none). */
  XETPROXY_CACHE_MEMORY?: string;
  /** Go duration a caller's positive Hub answers are reused, e.g. "30s" (the server default); "0s" = never. */
  XETPROXY_AUTH_CACHE_TTL?: string;
  XETPROXY_S3_ENDPOINT?: string;
  XETPROXY_S3_BUCKET?: string;
  XETPROXY_S3_PREFIX?: string;
  XETPROXY_S3_REGION?: string;
  /** "true" for S3 servers that need path-style addressing (MinIO); R2 does not. */
  XETPROXY_S3_PATH_STYLE?: string;
  /** Memory for writes waiting for the bucket (server default 256MiB). */
  XETPROXY_S3_QUEUE?: string;
  /** "false" turns off serving Xet to Xet clients (plain HTTP only); the server default is on. */
  XETPROXY_XET?: string;
  /**
   * Secret. Key that seals the xorb URLs handed to Xet clients (base64 or hex
   * of at least 32 bytes). Must be the same in every container: a client's
   * reconstruction and its xorb ranges are routed to different instances.
   */
  XETPROXY_SIGNING_KEY?: string;
  /** Secrets, for the S3/R2 cache tier. */
  AWS_ACCESS_KEY_ID?: string;
  AWS_SECRET_ACCESS_KEY?: string;
  /**
   * Go's GOMAXPROCS. Unset, the server runs one P under a visible CPU quota
   * of one CPU or less and Go's default otherwise; set it ("1") where an
   * instance shows more CPUs than it may use without a quota.
   */
  GOMAXPROCS?: string;
}

/** Passed through to the container when set and not empty (trimmed). */
export const PASS_THROUGH = [
  "HF_TOKEN",
  "XETPROXY_API_KEYS",
  "XETPROXY_ALLOW",
  "XETPROXY_DENY",
  "XETPROXY_AUDIT_KEY",
  "HF_ENDPOINT",
  "XETPROXY_LOG_LEVEL",
  "XETPROXY_MAX_DOWNLOADS",
  "XETPROXY_MAX_BUFFER",
  "XETPROXY_CACHE_DIR",
  "XETPROXY_CACHE_SIZE",
  "XETPROXY_CACHE_MEMORY",
  "XETPROXY_AUTH_CACHE_TTL",
  "XETPROXY_S3_ENDPOINT",
  "XETPROXY_S3_BUCKET",
  "XETPROXY_S3_PREFIX",
  "XETPROXY_S3_REGION",
  "XETPROXY_S3_PATH_STYLE",
  "XETPROXY_S3_QUEUE",
  "XETPROXY_XET",
  "XETPROXY_SIGNING_KEY",
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
  "GOMAXPROCS",
] as const satisfies readonly (keyof WorkerVars)[];

/**
 * Names where an empty value is a setting, not an absence: XETPROXY_CACHE_DIR=""
 * turns off the disk cache that the image enables by default.
 */
const EMPTY_MEANS_OFF: ReadonlySet<string> = new Set(["XETPROXY_CACHE_DIR"]);

/**
 * Parses the Go duration forms operators write ("14m", "90s", "1h",
 * "10m30s", "1.5h", "500ms") into seconds; null when it is not one.
 */
export function durationSeconds(s: string): number | null {
  const re = /(\d+(?:\.\d+)?)(h|ms|m|s)/gy;
  let total = 0;
  let pos = 0;
  const text = s.trim();
  if (text === "") return null;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const n = Number(m[1]);
    total += n * { h: 3600, m: 60, s: 1, ms: 0.001 }[m[2] as "h" | "m" | "s" | "ms"];
    pos = re.lastIndex;
  }
  return pos === text.length ? total : null;
}

/** The drain deadline to pass, kept inside Cloudflare's 15-minute SIGTERM window. */
export function drainTimeout(raw: string | undefined, warn: (msg: string) => void = () => {}): string {
  if (raw === undefined || raw.trim() === "") return DEFAULT_DRAIN_TIMEOUT;
  const secs = durationSeconds(raw);
  if (secs === null) {
    warn(`XETPROXY_DRAIN_TIMEOUT=${JSON.stringify(raw)} is not a duration; using ${DEFAULT_DRAIN_TIMEOUT}`);
    return DEFAULT_DRAIN_TIMEOUT;
  }
  if (secs > MAX_DRAIN_SECONDS) {
    warn(`XETPROXY_DRAIN_TIMEOUT=${raw} is not below Cloudflare's 15m SIGKILL; using ${DEFAULT_DRAIN_TIMEOUT}`);
    return DEFAULT_DRAIN_TIMEOUT;
  }
  return raw.trim();
}

function truthy(s: string | undefined): boolean {
  return s !== undefined && ["1", "true", "yes", "on"].includes(s.trim().toLowerCase());
}

function falsy(s: string | undefined): boolean {
  return s !== undefined && ["0", "false", "no", "off"].includes(s.trim().toLowerCase());
}

/** The environment of every container instance. */
export function containerEnvVars(vars: WorkerVars, warn: (msg: string) => void = () => {}): Record<string, string> {
  const out: Record<string, string> = {
    XETPROXY_LISTEN: `:${CONTAINER_PORT}`,
    // Workers Logs indexes JSON fields; an operator may still choose text.
    XETPROXY_LOG_FORMAT: vars.XETPROXY_LOG_FORMAT?.trim() || "json",
    XETPROXY_DRAIN_TIMEOUT: drainTimeout(vars.XETPROXY_DRAIN_TIMEOUT, warn),
    XETPROXY_SERVER_TOKEN_ENABLED: truthy(vars.XETPROXY_SERVER_TOKEN_ENABLED) ? "true" : "false",
  };
  for (const name of PASS_THROUGH) {
    const v = vars[name];
    if (typeof v !== "string") continue;
    if (v.trim() !== "" || EMPTY_MEANS_OFF.has(name)) out[name] = v.trim();
  }
  if (out.XETPROXY_SERVER_TOKEN_ENABLED === "true" && out.HF_TOKEN === undefined) {
    warn("XETPROXY_SERVER_TOKEN_ENABLED is true but no HF_TOKEN secret is set");
  }
  if (out.XETPROXY_SERVER_TOKEN_ENABLED === "true" && out.XETPROXY_API_KEYS === undefined) {
    warn("XETPROXY_SERVER_TOKEN_ENABLED is true but no XETPROXY_API_KEYS secret is set: no caller can use HF_TOKEN");
  }
  // Without a shared key each container seals xorb URLs with a key of its
  // own, and the instance a xorb range is routed to (by xorb hash) refuses
  // a URL sealed by the instance that answered the reconstruction (by file
  // hash). The warning names the variable, never a value.
  if (out.XETPROXY_SIGNING_KEY === undefined && !falsy(out.XETPROXY_XET)) {
    warn(
      "XETPROXY_SIGNING_KEY is not set: each container seals Xet xorb URLs with its own key, so Xet clients fail whenever a reconstruction and its xorbs land on different instances",
    );
  }
  return out;
}
