// The xetproxy Worker: fronts a pool of xetproxy containers on Cloudflare
// Workers Containers.
//
//   GET /health                        answered here, no container woken
//   /_container/{health,readyz,metrics}?instance=N
//                                      that path on container N (admin token
//                                      when the ADMIN_TOKEN secret is set)
//   /metrics                           404: metrics are per instance (above)
//   /download/..., /{repo}/resolve/... the instance that owns the file
//   /download-hash/{hash}              the instance that owns the hash
//   anything else                      a random instance
//
// Requests reach the container as they came (method, URL, headers including
// Authorization and Range, body; X-Forwarded-Proto is added when Cloudflare
// did not set it); responses come back as the container sent them,
// streamed. Only the Worker's own errors are made here.

import { Container } from "@cloudflare/containers";
import type { StopParams } from "@cloudflare/containers";
import { CONTAINER_PORT, DEFAULT_SLEEP_AFTER, containerEnvVars, type WorkerVars } from "./config";
import { RETRY_AFTER_SECONDS, jsonError, translateContainerResponse } from "./errors";
import { instanceCount, instanceName, pickInstance } from "./routing";

/** What the Worker needs of a container instance: fetch. */
export interface ContainerStub {
  fetch(request: Request): Promise<Response>;
}

/**
 * What the Worker needs of the Durable Object namespace. The real binding
 * (DurableObjectNamespace<XetProxyContainer>) fits; tests pass a stub.
 */
export interface ContainerNamespace {
  getByName(name: string): ContainerStub;
}

export interface Env extends WorkerVars {
  XETPROXY: ContainerNamespace;
}

/** One xetproxy container; each named instance is one Durable Object. */
export class XetProxyContainer extends Container<Env> {
  override defaultPort = CONTAINER_PORT;
  override sleepAfter: string | number = DEFAULT_SLEEP_AFTER;
  override enableInternet = true;

  constructor(ctx: DurableObjectState<{}>, env: Env) {
    super(ctx, env);
    this.sleepAfter = env.SLEEP_AFTER?.trim() || DEFAULT_SLEEP_AFTER;
    this.envVars = containerEnvVars(env, (msg) => console.warn(msg));
  }

  override onStart(): void {
    console.log({ msg: "container started", id: this.ctx.id.toString() });
  }

  override onStop(params: StopParams): void {
    console.log({ msg: "container stopped", id: this.ctx.id.toString(), exitCode: params.exitCode, reason: params.reason });
  }

  override onError(error: unknown): unknown {
    console.error({ msg: "container error", id: this.ctx.id.toString(), error: String(error) });
    throw error;
  }
}

export interface HandlerOptions {
  /** Source of randomness for spreading requests, [0, 1). */
  random?: () => number;
  /** Where the Worker's own log lines go. */
  log?: (entry: Record<string, unknown>) => void;
}

const ADMIN_PATHS = new Set(["health", "readyz", "metrics"]);

/** The Worker's request handler, with the namespace and randomness injected. */
export async function handle(request: Request, env: Env, opts: HandlerOptions = {}): Promise<Response> {
  const log = opts.log ?? ((entry) => console.log(entry));
  const url = new URL(request.url);
  const count = instanceCount(env.XETPROXY_INSTANCES);
  const requestId = request.headers.get("cf-ray");

  if (url.pathname === "/health") {
    if (request.method !== "GET" && request.method !== "HEAD") {
      return jsonError(405, "MethodNotAllowed", "use GET /health", { headers: { Allow: "GET, HEAD" }, requestId });
    }
    const body = JSON.stringify({ status: "ok", served_by: "worker", instances: count }) + "\n";
    return new Response(request.method === "HEAD" ? null : body, {
      headers: { "Content-Type": "application/json", "Cache-Control": "no-store" },
    });
  }
  if (url.pathname === "/metrics") {
    return jsonError(
      404,
      "NotFound",
      `metrics are per container instance: scrape /_container/metrics?instance=N for N in 0..${count - 1}`,
      { requestId },
    );
  }
  if (url.pathname.startsWith("/_container/")) {
    return containerPath(request, url, env, count, log, requestId);
  }

  const route = pickInstance(url, count, opts.random);
  return forward(withForwardedProto(request, url), env, route.instance, log, requestId);
}

/**
 * The container is reached over plain HTTP, so the server learns the
 * client's scheme from X-Forwarded-Proto (for the absolute pagination links
 * it rewrites to its own origin). Cloudflare normally sets the header; when
 * it is missing, it is added from the URL. Nothing else is touched.
 */
export function withForwardedProto(request: Request, url: URL): Request {
  if (request.headers.has("X-Forwarded-Proto")) return request;
  const headers = new Headers(request.headers);
  headers.set("X-Forwarded-Proto", url.protocol.slice(0, -1));
  return new Request(request, { headers });
}

async function forward(
  request: Request,
  env: Env,
  instance: number,
  log: (entry: Record<string, unknown>) => void,
  requestId: string | null,
): Promise<Response> {
  let res: Response;
  try {
    res = await env.XETPROXY.getByName(instanceName(instance)).fetch(request);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    log({ msg: "container fetch failed", instance, error: message, requestId });
    return jsonError(503, "ContainerUnreachable", `container instance ${instance} could not be reached: ${message}`, {
      headers: { "Retry-After": RETRY_AFTER_SECONDS },
      requestId,
    });
  }
  return translateContainerResponse(res, instance, (msg) => log({ msg, instance, requestId }), requestId);
}

/** /_container/{health,readyz,metrics}?instance=N: one instance's own endpoint. */
async function containerPath(
  request: Request,
  url: URL,
  env: Env,
  count: number,
  log: (entry: Record<string, unknown>) => void,
  requestId: string | null,
): Promise<Response> {
  const what = url.pathname.slice("/_container/".length);
  if (!ADMIN_PATHS.has(what)) {
    return jsonError(404, "NotFound", "known: /_container/health, /_container/readyz, /_container/metrics", {
      requestId,
    });
  }
  if (request.method !== "GET" && request.method !== "HEAD") {
    return jsonError(405, "MethodNotAllowed", `use GET /_container/${what}`, {
      headers: { Allow: "GET, HEAD" },
      requestId,
    });
  }
  if (env.ADMIN_TOKEN !== undefined && env.ADMIN_TOKEN !== "") {
    if (!(await sameSecret(adminToken(request.headers), env.ADMIN_TOKEN))) {
      return jsonError(401, "Unauthorized", "missing or wrong admin token (X-Admin-Token or Authorization: Bearer)", {
        requestId,
      });
    }
  }
  const raw = url.searchParams.get("instance") ?? "0";
  const instance = /^\d{1,4}$/.test(raw) ? Number(raw) : NaN;
  if (!(instance >= 0 && instance < count)) {
    return jsonError(400, "InvalidInstance", `instance must be a whole number in 0..${count - 1}, got ${JSON.stringify(raw)}`, {
      requestId,
    });
  }
  const inner = new Request(new URL(`/${what}`, url), { method: request.method });
  const res = await forward(inner, env, instance, log, requestId);
  const out = new Response(res.body, res);
  out.headers.set("X-Xetproxy-Instance", String(instance));
  out.headers.set("Cache-Control", "no-store");
  return out;
}

/**
 * The admin token of a /_container/* request: X-Admin-Token, else a bearer
 * token (what Prometheus' `authorization` setting sends). These routes never
 * reach the Hub, so a bearer token here cannot be a Hugging Face token.
 */
function adminToken(headers: Headers): string {
  const direct = headers.get("X-Admin-Token");
  if (direct !== null) return direct;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(headers.get("Authorization") ?? "");
  return m?.[1] ?? "";
}

/** Compares two secrets in time independent of where they differ. */
async function sameSecret(got: string, want: string): Promise<boolean> {
  const enc = new TextEncoder();
  const [a, b] = await Promise.all([
    crypto.subtle.digest("SHA-256", enc.encode(got)),
    crypto.subtle.digest("SHA-256", enc.encode(want)),
  ]);
  return crypto.subtle.timingSafeEqual(a, b);
}

export default {
  fetch(request: Request, env: Env): Promise<Response> {
    return handle(request, env);
  },
} satisfies ExportedHandler<Env>;
