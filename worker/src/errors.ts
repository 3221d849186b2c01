// Error answers of the Worker itself, in the server's shape: a JSON body
// {"error", "code", "request_id"} and the X-Error-Code / X-Error-Message
// headers Hugging Face clients read, so a client handles one format whether
// the Worker or a container answered. The request id is Cloudflare's Ray ID.

export interface ErrorOptions {
  headers?: Record<string, string>;
  /** The cf-ray of the request, when there is one. */
  requestId?: string | null;
}

export function jsonError(status: number, code: string, message: string, opts: ErrorOptions = {}): Response {
  const body: Record<string, string> = { error: message, code };
  if (opts.requestId) body.request_id = opts.requestId;
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: {
      "Content-Type": "application/json",
      "Cache-Control": "no-store",
      "X-Error-Code": code,
      "X-Error-Message": message.replace(/[^\x20-\x7e]/g, "?"),
      ...opts.headers,
    },
  });
}

/** Seconds a client should wait before retrying a container that is starting or failed. */
export const RETRY_AFTER_SECONDS = "10";

/**
 * The plain-text answers @cloudflare/containers (0.3.7, pinned) makes itself
 * when it cannot start a container or reach it, by the start of their body.
 * test/errors.test.ts checks every prefix still occurs in the pinned
 * library, so an upgrade that rewords one fails the tests.
 */
export const LIBRARY_ERRORS: readonly { prefix: string; code: string; message: string }[] = [
  {
    prefix: "There is no Container instance available",
    code: "NoContainerInstance",
    message: "no container instance is available (max_instances reached, or still provisioning)",
  },
  { prefix: "Failed to start container", code: "ContainerStartFailed", message: "the container failed to start" },
  { prefix: "Container suddenly disconnected", code: "ContainerDisconnected", message: "the container disconnected" },
  {
    prefix: "Error proxying request to container",
    code: "ContainerUnreachable",
    message: "the request could not be passed to the container",
  },
];

const LIBRARY_STATUSES = new Set([500, 503]);

/**
 * Turns the library's plain-text start/proxy failures into 503 JSON errors
 * (with Retry-After); every other response, including all of xetproxy's own,
 * is returned as it came, body still streaming. Only small text/plain 500
 * and 503 answers are read to tell them apart.
 */
export async function translateContainerResponse(
  res: Response,
  instance: number,
  log: (msg: string) => void = () => {},
  requestId?: string | null,
): Promise<Response> {
  if (!LIBRARY_STATUSES.has(res.status)) return res;
  const type = res.headers.get("Content-Type") ?? "";
  if (!type.toLowerCase().startsWith("text/plain")) return res;
  const text = await res.text();
  const known = LIBRARY_ERRORS.find((e) => text.startsWith(e.prefix));
  if (known === undefined) {
    // A plain-text answer of the server itself: give it back unchanged.
    return new Response(text, { status: res.status, statusText: res.statusText, headers: res.headers });
  }
  log(`instance ${instance}: ${known.code}: ${text.slice(0, 500)}`);
  return jsonError(503, known.code, `${known.message} (instance ${instance})`, {
    headers: { "Retry-After": RETRY_AFTER_SECONDS },
    requestId,
  });
}
