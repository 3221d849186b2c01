// Tests run inside workerd (the Workers runtime) through
// @cloudflare/vitest-pool-workers, offline. They do not load wrangler.jsonc
// (test/config.test.ts reads it as text): its container would need a Docker
// engine to build the image. Handler tests inject a stub namespace. One real
// container-enabled Durable Object (below) lets test/container.test.ts
// construct XetProxyContainer and drive a failing start through the real
// @cloudflare/containers code; workerd talks to test/fake-docker-engine.mjs
// instead of a Docker engine.
import os from "node:os";
import path from "node:path";
import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

const dockerSocket = path.join(os.tmpdir(), `xetproxy-worker-test-docker-${process.pid}.sock`);
process.env.XETPROXY_FAKE_DOCKER_SOCK = dockerSocket;

export default defineConfig({
  plugins: [
    cloudflareTest({
      main: "./src/index.ts",
      miniflare: {
        compatibilityDate: "2026-04-20",
        durableObjects: {
          XETPROXY: {
            className: "XetProxyContainer",
            useSQLite: true,
            container: { imageName: "xetproxy-test:never-built" },
          },
        },
        containerEngine: { localDocker: { socketPath: `unix:${dockerSocket}` } },
        bindings: {
          HF_TOKEN: "hf_test_secret",
          XETPROXY_API_KEYS: "k1,k2",
          XETPROXY_SERVER_TOKEN_ENABLED: "true",
          XETPROXY_CACHE_SIZE: "6GiB",
          XETPROXY_SIGNING_KEY: "test-signing-key-0123456789abcdef0123456789abcdef",
          SLEEP_AFTER: "20m",
        },
      },
    }),
  ],
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/fake-docker-engine.mjs"],
    // workerd's container monitor rejects on its own when the fake engine
    // refuses a start; the request path under test handles that failure.
    onUnhandledError(error) {
      return !String((error as Error)?.message ?? error).includes("Container failed to start");
    },
  },
});
