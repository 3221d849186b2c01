import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import containersSource from "../node_modules/@cloudflare/containers/dist/lib/container.js?raw";
import { LIBRARY_ERRORS, translateContainerResponse } from "../src/errors";
import { type XetProxyContainer, handle } from "../src/index";

describe("XetProxyContainer", () => {
  // Real Durable Objects with a container-enabled context (vitest.config.ts).
  // No container ever runs: the fake engine refuses every start.
  const ns = env.XETPROXY;

  it("listens on 8080 with internet access and the Worker's vars and secrets", async () => {
    const got = await runInDurableObject(ns.getByName("test-0"), (c: XetProxyContainer) => ({
      defaultPort: c.defaultPort,
      enableInternet: c.enableInternet,
      sleepAfter: c.sleepAfter,
      envVars: c.envVars,
    }));
    expect(got).toEqual({
      defaultPort: 8080,
      enableInternet: true,
      sleepAfter: "20m",
      envVars: {
        XETPROXY_LISTEN: ":8080",
        XETPROXY_LOG_FORMAT: "json",
        XETPROXY_DRAIN_TIMEOUT: "14m",
        XETPROXY_SERVER_TOKEN_ENABLED: "true",
        HF_TOKEN: "hf_test_secret",
        XETPROXY_API_KEYS: "k1,k2",
        XETPROXY_CACHE_SIZE: "6GiB",
        XETPROXY_SIGNING_KEY: "test-signing-key-0123456789abcdef0123456789abcdef",
      },
    });
  });

  it("turns a container that cannot start into a 503 JSON answer, end to end", async () => {
    // Real namespace, real Container code, real workerd container client; the
    // fake engine refuses the start.
    const res = await handle(new Request("https://xetproxy.example/download/ns/m/w.bin"), { XETPROXY: ns }, {
      log: () => {},
    });
    expect(res.status).toBe(503);
    expect(res.headers.get("Retry-After")).toBe("10");
    const body = (await res.json()) as { code: string; error: string };
    expect(body.code).toBe("ContainerStartFailed");
  });

  it("has not started a container by being constructed", async () => {
    const running = await runInDurableObject(
      ns.getByName("test-1"),
      (_c: XetProxyContainer, state: DurableObjectState) => state.container?.running,
    );
    expect(running).toBe(false);
  });
});

describe("the pinned @cloudflare/containers", () => {
  it.each(LIBRARY_ERRORS.map((e) => [e.prefix]))("still answers %j when it cannot start or reach a container", (prefix) => {
    expect(["'", '"', "`"].some((q) => containersSource.includes(q + prefix))).toBe(true);
  });

  it("reads no body of a response that is not a small plain-text 500/503", async () => {
    for (const res of [
      new Response("Failed to start container: x", { status: 502 }),
      new Response("Failed to start container: x", { status: 500, headers: { "Content-Type": "application/json" } }),
      new Response("data", { status: 200 }),
    ]) {
      const out = await translateContainerResponse(res, 0);
      expect(out).toBe(res);
      expect(out.bodyUsed).toBe(false);
    }
  });
});
