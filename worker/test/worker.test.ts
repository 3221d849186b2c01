import { describe, expect, it } from "vitest";
import worker, {
  type ContainerNamespace,
  type Env,
  type XetProxyContainer,
  handle,
  withForwardedProto,
} from "../src/index";
import { instanceName } from "../src/routing";

// Compile-time: the real binding type fits what the Worker asks of it.
const bindingFits: DurableObjectNamespace<XetProxyContainer> extends ContainerNamespace ? true : never = true;

interface Seen {
  instance: string;
  request: Request;
  body: string;
}

/**
 * A stand-in for the container namespace: records which instance got which
 * request, and answers with respond() (default: 200 naming the instance).
 */
function stubNamespace(respond?: (instance: string, req: Request) => Response | Promise<Response>) {
  const seen: Seen[] = [];
  const names: string[] = [];
  const ns: ContainerNamespace = {
    getByName(name: string) {
      names.push(name);
      return {
        async fetch(request: Request) {
          const body = request.body === null ? "" : await request.clone().text();
          seen.push({ instance: name, request, body });
          if (respond) return respond(name, request);
          return new Response(`from ${name}`, { headers: { "X-Instance": name } });
        },
      };
    },
  };
  return { ns, seen, names };
}

const env = (ns: ContainerNamespace, vars: Partial<Env> = {}): Env => ({ XETPROXY: ns, XETPROXY_INSTANCES: "4", ...vars });
const req = (path: string, init?: RequestInit) => new Request(`https://xetproxy.example.workers.dev${path}`, init);

async function expectJSONError(res: Response, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get("Content-Type")).toBe("application/json");
  expect(res.headers.get("X-Error-Code")).toBe(code);
  const body = (await res.json()) as { error: string; code: string };
  expect(body.code).toBe(code);
  expect(body.error.length).toBeGreaterThan(0);
  return body;
}

describe("/health", () => {
  it("is answered by the Worker without touching a container", async () => {
    const { ns, names } = stubNamespace();
    const res = await handle(req("/health"), env(ns));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok", served_by: "worker", instances: 4 });
    const head = await handle(req("/health", { method: "HEAD" }), env(ns));
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
    expect(names).toEqual([]);
  });

  it("refuses other methods", async () => {
    const { ns, names } = stubNamespace();
    await expectJSONError(await handle(req("/health", { method: "POST" }), env(ns)), 405, "MethodNotAllowed");
    expect(names).toEqual([]);
  });

  it("works through the default export", async () => {
    const { ns, names } = stubNamespace();
    const res = await worker.fetch(req("/health"), env(ns));
    expect(res.status).toBe(200);
    expect(names).toEqual([]);
  });
});

describe("forwarding", () => {
  it("passes method, URL, Authorization, Range and every other header unchanged", async () => {
    const { ns, seen } = stubNamespace();
    const headers = {
      Authorization: "Bearer hf_user_token",
      Range: "bytes=100-199",
      "If-None-Match": '"abc"',
      "X-Proxy-Key": "k1",
      Accept: "application/vnd.xet-fileinfo+json, */*",
      "User-Agent": "huggingface_hub/1.0",
    };
    const r = req("/download/ns/m/model.safetensors?revision=v1", { headers });
    const res = await handle(r, env(ns));
    expect(res.status).toBe(200);
    expect(seen).toHaveLength(1);
    const got = seen[0]!.request;
    expect(got.method).toBe("GET");
    expect(got.url).toBe(r.url);
    for (const [k, v] of Object.entries(headers)) expect(got.headers.get(k)).toBe(v);
    // Nothing else changed; only the scheme was added, since none was set.
    expect(got.headers.get("X-Forwarded-Proto")).toBe("https");
    expect([...got.headers].length).toBe([...r.headers].length + 1);
  });

  it("forwards the very request object when X-Forwarded-Proto is already set", async () => {
    const { ns, seen } = stubNamespace();
    const r = req("/download/ns/m/w.bin", { headers: { "X-Forwarded-Proto": "https", Range: "bytes=5-" } });
    await handle(r, env(ns));
    expect(seen[0]!.request).toBe(r);
  });

  it("adds X-Forwarded-Proto from the URL without touching the body", async () => {
    const plain = new Request("http://127.0.0.1:8787/api/x", { method: "PUT", body: "abc" });
    const out = withForwardedProto(plain, new URL(plain.url));
    expect(out.headers.get("X-Forwarded-Proto")).toBe("http");
    expect(out.method).toBe("PUT");
    expect(await out.text()).toBe("abc");
  });

  it("passes a request body unchanged (paths-info POST)", async () => {
    const { ns, seen } = stubNamespace();
    const body = JSON.stringify({ paths: ["a.bin", "b/c.json"] });
    await handle(
      req("/api/models/ns/m/paths-info/main", { method: "POST", body, headers: { "Content-Type": "application/json" } }),
      env(ns),
    );
    expect(seen[0]!.request.method).toBe("POST");
    expect(seen[0]!.body).toBe(body);
    expect(seen[0]!.request.headers.get("Content-Type")).toBe("application/json");
  });

  it("returns the container's response object itself: status, headers and streamed body", async () => {
    let sent: Response | undefined;
    const { ns } = stubNamespace(() => {
      const stream = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(new TextEncoder().encode("0123"));
          c.enqueue(new TextEncoder().encode("4567"));
          c.close();
        },
      });
      sent = new Response(stream, {
        status: 206,
        headers: { "Content-Range": "bytes 0-7/100", ETag: '"e"', "X-Repo-Commit": "c".repeat(40) },
      });
      return sent;
    });
    const res = await handle(req("/download/ns/m/w.bin", { headers: { Range: "bytes=0-7" } }), env(ns));
    expect(res).toBe(sent);
    expect(res.status).toBe(206);
    expect(res.headers.get("Content-Range")).toBe("bytes 0-7/100");
    expect(await res.text()).toBe("01234567");
  });

  it("passes the server's own errors through untouched (JSON or plain text)", async () => {
    const jsonBody = JSON.stringify({ error: "overloaded", code: "Overloaded", request_id: "r1" });
    const { ns } = stubNamespace((_, r) => {
      if (r.url.includes("json")) {
        return new Response(jsonBody, {
          status: 503,
          headers: { "Content-Type": "application/json", "Retry-After": "1" },
        });
      }
      return new Response("Method Not Allowed\n", { status: 500, headers: { "Content-Type": "text/plain; charset=utf-8" } });
    });
    const a = await handle(req("/download/ns/m/json.bin"), env(ns));
    expect(a.status).toBe(503);
    expect(a.headers.get("Retry-After")).toBe("1");
    expect(await a.text()).toBe(jsonBody);
    const b = await handle(req("/download/ns/m/text.bin"), env(ns));
    expect(b.status).toBe(500);
    expect(b.headers.get("Content-Type")).toBe("text/plain; charset=utf-8");
    expect(await b.text()).toBe("Method Not Allowed\n");
  });
});

describe("routing through the handler", () => {
  it("sends one file to one instance, whichever route names it", async () => {
    const { ns, names } = stubNamespace();
    const e = env(ns);
    for (let i = 0; i < 10; i++) {
      await handle(req("/download/ns/m/shard-3.safetensors?revision=main"), e, { random: Math.random });
      await handle(req("/ns/m/resolve/main/shard-3.safetensors", { method: "HEAD" }), e, { random: Math.random });
    }
    expect(new Set(names).size).toBe(1);
  });

  it("sends a hash to one instance", async () => {
    const { ns, names } = stubNamespace();
    const h = "0f".repeat(32);
    for (let i = 0; i < 10; i++) await handle(req(`/download-hash/${h}?repo=ns/m&filename=a.bin`), env(ns));
    expect(new Set(names).size).toBe(1);
  });

  it("uses every instance for many files, and only configured instances", async () => {
    const { ns, names } = stubNamespace();
    const e = env(ns, { XETPROXY_INSTANCES: "5" });
    for (let i = 0; i < 500; i++) await handle(req(`/download/org/model/file-${i}.bin`), e);
    const counts = new Map<string, number>();
    for (const n of names) counts.set(n, (counts.get(n) ?? 0) + 1);
    expect([...counts.keys()].sort()).toEqual([0, 1, 2, 3, 4].map(instanceName));
    for (const c of counts.values()) expect(c).toBeGreaterThan(60);
  });

  it("spreads API calls with the injected randomness", async () => {
    const { ns, names } = stubNamespace();
    const e = env(ns);
    const rolls = [0.1, 0.3, 0.6, 0.9];
    for (const x of rolls) await handle(req("/api/models/ns/m"), e, { random: () => x });
    expect(names).toEqual([0, 1, 2, 3].map(instanceName));
  });

  it("defaults to 4 instances when XETPROXY_INSTANCES is unset", async () => {
    const { ns, names } = stubNamespace();
    for (let i = 0; i < 400; i++) await handle(req(`/download/o/m/f${i}`), { XETPROXY: ns });
    expect(new Set(names).size).toBe(4);
  });
});

describe("container failures", () => {
  it("answers 503 JSON when the fetch to the container throws", async () => {
    const logs: Record<string, unknown>[] = [];
    const ns: ContainerNamespace = {
      getByName: () => ({
        fetch: () => Promise.reject(new Error("Durable Object reset because its code was updated.")),
      }),
    };
    const res = await handle(req("/download/ns/m/w.bin", { headers: { "cf-ray": "8a1b2c3d4e5f-AMS" } }), env(ns), {
      log: (e) => logs.push(e),
    });
    expect(res.headers.get("Retry-After")).toBe("10");
    const body = await expectJSONError(res, 503, "ContainerUnreachable");
    expect(body.error).toContain("Durable Object reset");
    expect((body as { request_id?: string }).request_id).toBe("8a1b2c3d4e5f-AMS");
    expect(logs).toHaveLength(1);
  });

  it("answers 503 JSON when the namespace itself throws", async () => {
    const ns: ContainerNamespace = {
      getByName: () => {
        throw new Error("binding unavailable");
      },
    };
    await expectJSONError(await handle(req("/api/whoami-v2"), env(ns)), 503, "ContainerUnreachable");
  });

  it.each([
    [
      503,
      "There is no Container instance available at this time.\nThis is likely because you have reached your max concurrent instance count",
      "NoContainerInstance",
    ],
    [500, "Failed to start container: container exited with code 2", "ContainerStartFailed"],
    [500, "Container suddenly disconnected, try again", "ContainerDisconnected"],
    [500, "Error proxying request to container: connection refused", "ContainerUnreachable"],
  ])("turns the containers library's %i %j into 503 JSON", async (status, text, code) => {
    const { ns } = stubNamespace(() => new Response(text, { status }));
    const res = await handle(req("/download/ns/m/w.bin"), env(ns));
    expect(res.headers.get("Retry-After")).toBe("10");
    await expectJSONError(res, 503, code);
  });
});

describe("/_container/*", () => {
  it("asks the named instance for its own health", async () => {
    const { ns, seen } = stubNamespace(
      () => new Response('{"status":"ok","version":"v1"}', { headers: { "Content-Type": "application/json" } }),
    );
    const res = await handle(req("/_container/health?instance=2", { headers: { Authorization: "Bearer x" } }), env(ns));
    expect(res.status).toBe(200);
    expect(res.headers.get("X-Xetproxy-Instance")).toBe("2");
    expect(await res.json()).toEqual({ status: "ok", version: "v1" });
    expect(seen).toHaveLength(1);
    expect(seen[0]!.instance).toBe(instanceName(2));
    expect(new URL(seen[0]!.request.url).pathname).toBe("/health");
    expect(seen[0]!.request.headers.get("Authorization")).toBeNull();
  });

  it("reaches readyz and metrics, instance 0 by default", async () => {
    const { ns, seen } = stubNamespace();
    await handle(req("/_container/readyz"), env(ns));
    await handle(req("/_container/metrics?instance=3"), env(ns));
    expect(seen.map((s) => [s.instance, new URL(s.request.url).pathname])).toEqual([
      [instanceName(0), "/readyz"],
      [instanceName(3), "/metrics"],
    ]);
  });

  it("rejects instances outside the configured count and unknown paths", async () => {
    const { ns, names } = stubNamespace();
    for (const bad of ["4", "-1", "x", "1.5", "99999"]) {
      await expectJSONError(await handle(req(`/_container/health?instance=${bad}`), env(ns)), 400, "InvalidInstance");
    }
    await expectJSONError(await handle(req("/_container/shell"), env(ns)), 404, "NotFound");
    await expectJSONError(await handle(req("/_container/health", { method: "DELETE" }), env(ns)), 405, "MethodNotAllowed");
    expect(names).toEqual([]);
  });

  it("needs the admin token (X-Admin-Token or bearer) when ADMIN_TOKEN is set", async () => {
    const { ns, names } = stubNamespace();
    const e = env(ns, { ADMIN_TOKEN: "s3cret" });
    await expectJSONError(await handle(req("/_container/metrics"), e), 401, "Unauthorized");
    await expectJSONError(await handle(req("/_container/metrics", { headers: { "X-Admin-Token": "nope" } }), e), 401, "Unauthorized");
    expect(names).toEqual([]);
    await expectJSONError(
      await handle(req("/_container/metrics", { headers: { Authorization: "Bearer s3cre" } }), e),
      401,
      "Unauthorized",
    );
    expect(names).toEqual([]);
    const ok = await handle(req("/_container/metrics", { headers: { "X-Admin-Token": "s3cret" } }), e);
    expect(ok.status).toBe(200);
    // Prometheus' `authorization: {credentials: ...}` sends a bearer token.
    const bearer = await handle(req("/_container/metrics?instance=1", { headers: { Authorization: "Bearer s3cret" } }), e);
    expect(bearer.status).toBe(200);
    expect(names).toEqual([instanceName(0), instanceName(1)]);
  });

  it("reports a container that cannot start as 503 JSON", async () => {
    const { ns } = stubNamespace(() => new Response("Failed to start container: no image", { status: 500 }));
    const res = await handle(req("/_container/health?instance=1"), env(ns));
    expect(res.headers.get("X-Xetproxy-Instance")).toBe("1");
    await expectJSONError(res, 503, "ContainerStartFailed");
  });
});

describe("/metrics", () => {
  it("points at the per-instance route instead of sampling a random instance", async () => {
    const { ns, names } = stubNamespace();
    const body = await expectJSONError(await handle(req("/metrics"), env(ns)), 404, "NotFound");
    expect(body.error).toContain("/_container/metrics?instance=N");
    expect(names).toEqual([]);
  });
});

it("binding type check compiled", () => {
  expect(bindingFits).toBe(true);
});

describe("Xet CAS requests", () => {
  const fileHash = "5e".repeat(32);
  const xorbHash = "a7".repeat(32);

  it("sends a reconstruction (v1 and v2) to the instance of the file's /download-hash", async () => {
    const { ns, names } = stubNamespace();
    const e = env(ns, { XETPROXY_INSTANCES: "8" });
    await handle(req(`/download-hash/${fileHash}?repo=ns/m`), e);
    await handle(req(`/cas/v2/reconstructions/${fileHash}`, { headers: { Authorization: "Bearer cas" } }), e);
    await handle(req(`/cas/v1/reconstructions/${fileHash}`, { headers: { Range: "bytes=0-99" } }), e);
    expect(names).toHaveLength(3);
    expect(new Set(names).size).toBe(1);
  });

  it("forwards a xorb range with its ticket and Range untouched and no Authorization added", async () => {
    const { ns, seen } = stubNamespace();
    const e = env(ns, { XETPROXY_INSTANCES: "8" });
    const path = `/cas/xorbs/${xorbHash}?t=sealed.ticket-value`;
    await handle(req(path, { headers: { Range: "bytes=0-1023" } }), e);
    await handle(req(`/cas/xorbs/${xorbHash}?t=another`, { headers: { Range: "bytes=5-9" } }), e);
    expect(seen).toHaveLength(2);
    expect(seen[1]!.instance).toBe(seen[0]!.instance);
    const got = seen[0]!.request;
    expect(got.url).toBe(`https://xetproxy.example.workers.dev${path}`);
    expect(got.headers.get("Range")).toBe("bytes=0-1023");
    expect(got.headers.get("Authorization")).toBeNull();
  });

  it("never echoes the signing key in an answer or a log line", async () => {
    const key = "k3y".repeat(16);
    const logs: Record<string, unknown>[] = [];
    const failing: ContainerNamespace = {
      getByName: () => ({ fetch: () => Promise.reject(new Error("container gone")) }),
    };
    const answers = [
      await handle(req(`/cas/v2/reconstructions/${fileHash}`), env(failing, { XETPROXY_SIGNING_KEY: key }), {
        log: (l) => logs.push(l),
      }),
      await handle(req("/health"), env(failing, { XETPROXY_SIGNING_KEY: key }), { log: (l) => logs.push(l) }),
      await handle(req("/_container/0/readyz"), env(failing, { XETPROXY_SIGNING_KEY: key }), {
        log: (l) => logs.push(l),
      }),
    ];
    expect(logs.length).toBeGreaterThan(0);
    for (const res of answers) {
      expect(await res.text()).not.toContain(key);
      expect(JSON.stringify([...res.headers])).not.toContain(key);
    }
    expect(JSON.stringify(logs)).not.toContain(key);
  });
});
