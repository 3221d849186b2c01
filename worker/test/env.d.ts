// Vite's ?raw imports: a file's text as a string (tests read wrangler.jsonc,
// package.json and the pinned containers library this way).
declare module "*?raw" {
  const text: string;
  export default text;
}

// The test runtime's bindings (vitest.config.ts): the container-enabled
// namespace and the vars test/container.test.ts checks.
declare namespace Cloudflare {
  interface Env {
    XETPROXY: DurableObjectNamespace<import("../src/index").XetProxyContainer>;
  }
}
