import { describe, expect, it } from "vitest";
import packageJSON from "../package.json?raw";
import wranglerText from "../wrangler.jsonc?raw";
import {
  CONTAINER_PORT,
  DEFAULT_DRAIN_TIMEOUT,
  MAX_DRAIN_SECONDS,
  PASS_THROUGH,
  containerEnvVars,
  drainTimeout,
  durationSeconds,
} from "../src/config";
import { instanceCount } from "../src/routing";

describe("containerEnvVars", () => {
  it("has safe defaults with no vars at all", () => {
    expect(containerEnvVars({})).toEqual({
      XETPROXY_LISTEN: ":8080",
      XETPROXY_LOG_FORMAT: "json",
      XETPROXY_DRAIN_TIMEOUT: "14m",
      XETPROXY_SERVER_TOKEN_ENABLED: "false",
    });
  });

  it("passes HF_TOKEN only when the operator set one", () => {
    expect(containerEnvVars({}).HF_TOKEN).toBeUndefined();
    expect(containerEnvVars({ HF_TOKEN: "" }).HF_TOKEN).toBeUndefined();
    expect(containerEnvVars({ HF_TOKEN: "  " }).HF_TOKEN).toBeUndefined();
    expect(containerEnvVars({ HF_TOKEN: "hf_abc" }).HF_TOKEN).toBe("hf_abc");
  });

  it("passes API keys, server token switch and cache settings", () => {
    const env = containerEnvVars({
      XETPROXY_API_KEYS: "k1,k2",
      XETPROXY_SERVER_TOKEN_ENABLED: "TRUE",
      HF_TOKEN: "hf_x",
      XETPROXY_CACHE_DIR: "/var/cache/xetproxy",
      XETPROXY_CACHE_SIZE: "6GiB",
      XETPROXY_S3_ENDPOINT: "https://acct.r2.cloudflarestorage.com",
      XETPROXY_S3_BUCKET: "b",
      XETPROXY_S3_PREFIX: "p/",
      XETPROXY_S3_REGION: "auto",
      AWS_ACCESS_KEY_ID: "id",
      AWS_SECRET_ACCESS_KEY: "secret",
      XETPROXY_LOG_FORMAT: "text",
    });
    expect(env).toMatchObject({
      XETPROXY_API_KEYS: "k1,k2",
      XETPROXY_SERVER_TOKEN_ENABLED: "true",
      XETPROXY_CACHE_DIR: "/var/cache/xetproxy",
      XETPROXY_CACHE_SIZE: "6GiB",
      XETPROXY_S3_ENDPOINT: "https://acct.r2.cloudflarestorage.com",
      XETPROXY_S3_BUCKET: "b",
      XETPROXY_S3_PREFIX: "p/",
      XETPROXY_S3_REGION: "auto",
      AWS_ACCESS_KEY_ID: "id",
      AWS_SECRET_ACCESS_KEY: "secret",
      XETPROXY_LOG_FORMAT: "text",
    });
  });

  it("passes the memory tier, the memo TTL and the S3 tier's addressing and queue", () => {
    const env = containerEnvVars({
      XETPROXY_CACHE_MEMORY: "512MiB",
      XETPROXY_AUTH_CACHE_TTL: "0s",
      XETPROXY_S3_PATH_STYLE: "true",
      XETPROXY_S3_QUEUE: "1GiB",
    });
    expect(env).toMatchObject({
      XETPROXY_CACHE_MEMORY: "512MiB",
      XETPROXY_AUTH_CACHE_TTL: "0s",
      XETPROXY_S3_PATH_STYLE: "true",
      XETPROXY_S3_QUEUE: "1GiB",
    });
  });

  it("passes the repo policy and the audit key", () => {
    const env = containerEnvVars({
      XETPROXY_ALLOW: "model/meta-llama/*,dataset/*",
      XETPROXY_DENY: "*/acme/*",
      XETPROXY_AUDIT_KEY: "audit-key-0123456789",
    });
    expect(env).toMatchObject({
      XETPROXY_ALLOW: "model/meta-llama/*,dataset/*",
      XETPROXY_DENY: "*/acme/*",
      XETPROXY_AUDIT_KEY: "audit-key-0123456789",
    });
    expect(containerEnvVars({}).XETPROXY_ALLOW).toBeUndefined();
  });

  it("passes an empty XETPROXY_CACHE_DIR: it turns the image's disk cache off", () => {
    expect(containerEnvVars({ XETPROXY_CACHE_DIR: "" }).XETPROXY_CACHE_DIR).toBe("");
    expect(containerEnvVars({}).XETPROXY_CACHE_DIR).toBeUndefined();
    expect(containerEnvVars({ XETPROXY_CACHE_SIZE: "" }).XETPROXY_CACHE_SIZE).toBeUndefined();
  });

  it("passes GOMAXPROCS, trimmed, only when set", () => {
    expect(containerEnvVars({ GOMAXPROCS: " 1 " }).GOMAXPROCS).toBe("1");
    expect(containerEnvVars({}).GOMAXPROCS).toBeUndefined();
    expect(containerEnvVars({ GOMAXPROCS: "" }).GOMAXPROCS).toBeUndefined();
  });

  it("passes nothing it does not know (no binding, no admin token)", () => {
    const env = containerEnvVars({ ADMIN_TOKEN: "a", XETPROXY_INSTANCES: "4", SLEEP_AFTER: "1h" });
    expect(Object.keys(env).sort()).toEqual(
      ["XETPROXY_DRAIN_TIMEOUT", "XETPROXY_LISTEN", "XETPROXY_LOG_FORMAT", "XETPROXY_SERVER_TOKEN_ENABLED"].sort(),
    );
  });

  it("reads the server-token switch strictly", () => {
    for (const v of ["false", "0", "no", "", "maybe"]) {
      expect(containerEnvVars({ XETPROXY_SERVER_TOKEN_ENABLED: v }).XETPROXY_SERVER_TOKEN_ENABLED).toBe("false");
    }
    for (const v of ["true", "1", "yes", "on", " True "]) {
      expect(containerEnvVars({ XETPROXY_SERVER_TOKEN_ENABLED: v }).XETPROXY_SERVER_TOKEN_ENABLED).toBe("true");
    }
  });

  it("warns when the server token is enabled without a token or keys", () => {
    const warnings: string[] = [];
    containerEnvVars({ XETPROXY_SERVER_TOKEN_ENABLED: "true", XETPROXY_SIGNING_KEY: "k" }, (m) => warnings.push(m));
    expect(warnings).toHaveLength(2);
    warnings.length = 0;
    containerEnvVars(
      { XETPROXY_SERVER_TOKEN_ENABLED: "true", HF_TOKEN: "t", XETPROXY_API_KEYS: "k", XETPROXY_SIGNING_KEY: "k" },
      (m) => warnings.push(m),
    );
    expect(warnings).toHaveLength(0);
  });
});

describe("Xet signing key", () => {
  const key = "q".repeat(43) + "=";

  it("passes XETPROXY_SIGNING_KEY to every container, trimmed, only when set", () => {
    expect(containerEnvVars({ XETPROXY_SIGNING_KEY: ` ${key}\n` }).XETPROXY_SIGNING_KEY).toBe(key);
    expect(containerEnvVars({}).XETPROXY_SIGNING_KEY).toBeUndefined();
    expect(containerEnvVars({ XETPROXY_SIGNING_KEY: "  " }).XETPROXY_SIGNING_KEY).toBeUndefined();
  });

  it("passes the Xet switch", () => {
    expect(containerEnvVars({ XETPROXY_XET: "false" }).XETPROXY_XET).toBe("false");
    expect(containerEnvVars({}).XETPROXY_XET).toBeUndefined();
  });

  it("warns, naming the variable, when Xet is on and no shared key is set", () => {
    const warnings: string[] = [];
    containerEnvVars({}, (m) => warnings.push(m));
    containerEnvVars({ XETPROXY_XET: "true" }, (m) => warnings.push(m));
    expect(warnings).toHaveLength(2);
    for (const w of warnings) expect(w).toContain("XETPROXY_SIGNING_KEY");
    warnings.length = 0;
    containerEnvVars({ XETPROXY_XET: "false" }, (m) => warnings.push(m));
    containerEnvVars({ XETPROXY_SIGNING_KEY: key }, (m) => warnings.push(m));
    expect(warnings).toEqual([]);
  });

  it("never echoes the key in a warning", () => {
    const warnings: string[] = [];
    containerEnvVars(
      { XETPROXY_SIGNING_KEY: key, XETPROXY_SERVER_TOKEN_ENABLED: "true", XETPROXY_DRAIN_TIMEOUT: "1h" },
      (m) => warnings.push(m),
    );
    expect(warnings.length).toBeGreaterThan(0);
    for (const w of warnings) expect(w).not.toContain(key);
  });
});

describe("drain timeout", () => {
  it.each([
    ["14m", 840],
    ["90s", 90],
    ["1h", 3600],
    ["10m30s", 630],
    ["1.5m", 90],
    ["500ms", 0.5],
  ])("parses %s", (s, secs) => {
    expect(durationSeconds(s)).toBeCloseTo(secs);
  });

  it.each(["", "m", "14", "14 m", "1d", "-5m", "5m!"])("rejects %j", (s) => {
    expect(durationSeconds(s)).toBeNull();
  });

  it("stays inside Cloudflare's 15 minute SIGTERM window", () => {
    const warn: string[] = [];
    expect(drainTimeout(undefined)).toBe(DEFAULT_DRAIN_TIMEOUT);
    expect(drainTimeout("10m")).toBe("10m");
    expect(drainTimeout("14m59s")).toBe("14m59s");
    expect(drainTimeout("15m", (m) => warn.push(m))).toBe(DEFAULT_DRAIN_TIMEOUT);
    expect(drainTimeout("1h", (m) => warn.push(m))).toBe(DEFAULT_DRAIN_TIMEOUT);
    expect(drainTimeout("soon", (m) => warn.push(m))).toBe(DEFAULT_DRAIN_TIMEOUT);
    expect(warn).toHaveLength(3);
    expect(durationSeconds(DEFAULT_DRAIN_TIMEOUT)!).toBeLessThanOrEqual(MAX_DRAIN_SECONDS);
  });
});

/** Parses the server's size syntax ("6GiB", "500MB", "1024"): bytes, or null. */
function sizeBytes(s: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?$/i.exec(s.trim());
  if (!m) return null;
  const unit = (m[2] ?? "B").toUpperCase();
  const pow = { B: 0, K: 1, M: 2, G: 3, T: 4 }[unit[0] as "B" | "K" | "M" | "G" | "T"];
  return Number(m[1]) * (unit.includes("I") ? 1024 : 1000) ** pow;
}

/** JSONC to JSON: drops // and /* comments outside strings, and trailing commas. */
function parseJSONC(text: string): unknown {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j;
    } else if (c === "/" && text[i + 1] === "/") {
      while (i < text.length && text[i] !== "\n") i++;
      out += "\n";
    } else if (c === "/" && text[i + 1] === "*") {
      i = text.indexOf("*/", i + 2) + 1;
    } else {
      out += c;
    }
  }
  return JSON.parse(out.replace(/,(\s*[}\]])/g, "$1"));
}

interface WranglerConfig {
  main: string;
  observability?: { enabled?: boolean };
  containers: {
    class_name: string;
    image: string;
    image_build_context?: string;
    instance_type: string;
    max_instances: number;
    rollout_step_percentage?: number | number[];
    rollout_active_grace_period?: number;
  }[];
  durable_objects: { bindings: { name: string; class_name: string }[] };
  migrations: { tag: string; new_sqlite_classes?: string[] }[];
  vars: Record<string, string>;
}

describe("wrangler.jsonc", () => {
  const cfg = parseJSONC(wranglerText) as WranglerConfig;
  const container = cfg.containers[0]!;

  it("wires the container class, binding and migration together", async () => {
    const mod = await import("../src/index");
    expect(cfg.main).toBe("src/index.ts");
    expect(cfg.containers).toHaveLength(1);
    expect(container.class_name).toBe("XetProxyContainer");
    expect(typeof mod[container.class_name as keyof typeof mod]).toBe("function");
    expect(cfg.durable_objects.bindings).toEqual([{ name: "XETPROXY", class_name: container.class_name }]);
    expect(cfg.migrations.flatMap((m) => m.new_sqlite_classes ?? [])).toContain(container.class_name);
  });

  it("builds the repository's Dockerfile with the repository as context", () => {
    expect(container.image).toBe("../Dockerfile");
    expect(container.image_build_context).toBe("..");
  });

  it("routes over no more instances than max_instances allows", () => {
    expect(container.max_instances).toBeGreaterThanOrEqual(1);
    expect(instanceCount(cfg.vars.XETPROXY_INSTANCES)).toBeLessThanOrEqual(container.max_instances);
    expect(instanceCount(cfg.vars.XETPROXY_INSTANCES)).toBeGreaterThan(1); // several instances, not a singleton
  });

  it("has rollout settings, observability, and a drain deadline under 15 minutes", () => {
    const steps = container.rollout_step_percentage;
    expect(Array.isArray(steps) ? steps[steps.length - 1] : steps).toBe(100);
    expect(container.rollout_active_grace_period).toBeGreaterThan(0);
    expect(cfg.observability?.enabled).toBe(true);
    const drain = durationSeconds(cfg.vars.XETPROXY_DRAIN_TIMEOUT ?? DEFAULT_DRAIN_TIMEOUT);
    expect(drain).not.toBeNull();
    expect(drain!).toBeLessThanOrEqual(MAX_DRAIN_SECONDS);
  });

  it("sizes the disk cache below the instance type's disk", () => {
    const diskGB: Record<string, number> = {
      lite: 2,
      basic: 4,
      "standard-1": 8,
      "standard-2": 12,
      "standard-3": 16,
      "standard-4": 20,
    };
    const disk = diskGB[container.instance_type];
    expect(disk, `unknown instance_type ${container.instance_type}`).toBeDefined();
    const size = sizeBytes(cfg.vars.XETPROXY_CACHE_SIZE ?? "");
    expect(size).not.toBeNull();
    expect(size!).toBeLessThanOrEqual(disk! * 1e9 * 0.85);
  });

  it("keeps secrets out of vars", () => {
    for (const secret of [
      "HF_TOKEN",
      "XETPROXY_API_KEYS",
      "ADMIN_TOKEN",
      "AWS_ACCESS_KEY_ID",
      "AWS_SECRET_ACCESS_KEY",
      "XETPROXY_SIGNING_KEY",
    ]) {
      expect(cfg.vars[secret]).toBeUndefined();
    }
  });

  it("passes through only names the server reads", () => {
    for (const name of PASS_THROUGH) expect(name).toMatch(/^(HF_|XETPROXY_|AWS_|GOMAXPROCS$)/);
    expect(CONTAINER_PORT).toBe(8080);
  });
});

describe("package.json scripts", () => {
  const scripts = (JSON.parse(packageJSON) as { scripts: Record<string, string> }).scripts;
  it.each([
    ["deploy", "wrangler deploy"],
    ["deploy:immediate", "wrangler deploy --containers-rollout=immediate"],
    ["dev", "wrangler dev"],
    ["tail", "wrangler tail"],
    ["status", "wrangler containers list"],
    ["images", "wrangler containers images list"],
    ["login", "wrangler login"],
    ["test", "vitest run"],
    ["typecheck", "tsc --noEmit"],
  ])("%s runs %s", (name, cmd) => {
    expect(scripts[name]).toBe(cmd);
  });
});
