import { describe, expect, it } from "vitest";
import {
  DEFAULT_INSTANCES,
  MAX_ROUTED_INSTANCES,
  fnv1a64,
  instanceCount,
  instanceForKey,
  instanceName,
  jumpHash,
  mix64,
  pickInstance,
  routeKey,
} from "../src/routing";

const u = (s: string) => new URL(s, "https://proxy.example");

describe("routeKey", () => {
  it.each([
    ["/download/openai/gpt2/model.safetensors", "file\nmodel\nopenai/gpt2\nmain\nmodel.safetensors"],
    ["/download/openai/gpt2/model.safetensors?revision=v1", "file\nmodel\nopenai/gpt2\nv1\nmodel.safetensors"],
    ["/download/openai/gpt2/sub/dir/a.bin?revision=refs%2Fpr%2F1", "file\nmodel\nopenai/gpt2\nrefs/pr/1\nsub/dir/a.bin"],
    ["/download/datasets/ns/data/train.csv", "file\ndataset\nns/data\nmain\ntrain.csv"],
    ["/download/spaces/ns/app/app.py", "file\nspace\nns/app\nmain\napp.py"],
    ["/openai/gpt2/resolve/main/model.safetensors", "file\nmodel\nopenai/gpt2\nmain\nmodel.safetensors"],
    ["/gpt2/resolve/main/config.json", "file\nmodel\ngpt2\nmain\nconfig.json"],
    ["/datasets/ns/data/resolve/abc123/a/b.parquet", "file\ndataset\nns/data\nabc123\na/b.parquet"],
    ["/ns/m/resolve/refs%2Fpr%2F1/w.bin", "file\nmodel\nns/m\nrefs/pr/1\nw.bin"],
    ["/download-hash/ABCDEF0123?repo=ns/m", "hash\nabcdef0123"],
    ["/cas/v1/reconstructions/ABCDEF0123", "hash\nabcdef0123"],
    ["/cas/v2/reconstructions/abcdef0123", "hash\nabcdef0123"],
    ["/cas/xorbs/CDEF0123?t=sealed-ticket", "xorb\ncdef0123"],
  ])("%s", (path, want) => {
    expect(routeKey(u(path))).toBe(want);
  });

  it.each([
    "/",
    "/health",
    "/readyz",
    "/api/models/openai/gpt2",
    "/api/models/openai/gpt2/tree/main?recursive=true",
    "/download/openai/gpt2",
    "/download/openai/gpt2/",
    "/download/datasets/ns/data",
    "/download-hash/",
    "/openai/gpt2/resolve/main",
    "/openai/gpt2/resolve/main/",
    "/openai/gpt2/blob/main/README.md",
    "/cas",
    "/cas/",
    "/cas/v1/reconstructions",
    "/cas/v1/reconstructions/",
    "/cas/v3/reconstructions/abcd",
    "/cas/v1/reconstructions/abcd/extra",
    "/cas/v1/chunks/default/abcd",
    "/cas/xorbs",
    "/cas/xorbs/",
    "/cas/xorbs/abcd/extra",
    "/api/models/ns/m/xet-read-token/main",
  ])("%s names no file", (path) => {
    expect(routeKey(u(path))).toBeNull();
  });

  it("gives /download and /resolve of one file the same key", () => {
    expect(routeKey(u("/download/ns/m/w.bin?revision=dev"))).toBe(routeKey(u("/ns/m/resolve/dev/w.bin")));
    expect(routeKey(u("/download/datasets/ns/d/x.csv"))).toBe(routeKey(u("/datasets/ns/d/resolve/main/x.csv")));
  });

  it("separates repo types, repos, revisions and paths", () => {
    const keys = [
      "/download/ns/m/w.bin",
      "/download/datasets/ns/m/w.bin",
      "/download/spaces/ns/m/w.bin",
      "/download/ns/m2/w.bin",
      "/download/ns2/m/w.bin",
      "/download/ns/m/w.bin?revision=v2",
      "/download/ns/m/w2.bin",
      "/download/ns/m/sub/w.bin",
    ].map((p) => routeKey(u(p)));
    expect(new Set(keys).size).toBe(keys.length);
  });
});

describe("Xet CAS routes", () => {
  const hash = "0f".repeat(32);

  it("sends a file's reconstruction (v1 and v2) to the instance of its /download-hash", () => {
    const want = routeKey(u(`/download-hash/${hash}?repo=ns/m`));
    expect(routeKey(u(`/cas/v1/reconstructions/${hash}`))).toBe(want);
    expect(routeKey(u(`/cas/v2/reconstructions/${hash.toUpperCase()}`))).toBe(want);
    for (const count of [2, 4, 8, 64]) {
      const inst = pickInstance(u(`/download-hash/${hash}`), count).instance;
      expect(pickInstance(u(`/cas/v1/reconstructions/${hash}`), count, () => 0.999).instance).toBe(inst);
      expect(pickInstance(u(`/cas/v2/reconstructions/${hash}`), count, () => 0).instance).toBe(inst);
    }
  });

  it("routes a xorb by its hash whatever ticket the query carries", () => {
    const a = pickInstance(u(`/cas/xorbs/${hash}?ticket=one`), 8, () => 0);
    const b = pickInstance(u(`/cas/xorbs/${hash}?ticket=two&x=1`), 8, () => 0.999);
    expect(a.key).toBe(`xorb\n${hash}`);
    expect(b.instance).toBe(a.instance);
  });

  it("keeps xorb keys apart from file-hash keys of the same hex", () => {
    expect(routeKey(u(`/cas/xorbs/${hash}`))).not.toBe(routeKey(u(`/cas/v2/reconstructions/${hash}`)));
  });

  it("spreads xorbs over the instances", () => {
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const h = i.toString(16).padStart(64, "0");
      seen.add(pickInstance(u(`/cas/xorbs/${h}`), 4).instance);
    }
    expect(seen.size).toBe(4);
  });

  it("spreads the token route like any /api request", () => {
    const url = u("/api/models/ns/m/xet-read-token/main");
    expect(pickInstance(url, 4, () => 0).instance).toBe(0);
    expect(pickInstance(url, 4, () => 0.99).instance).toBe(3);
  });
});

describe("hashing", () => {
  it("fnv1a64 matches the published FNV-1a 64 values", () => {
    expect(fnv1a64("")).toBe(0xcbf29ce484222325n);
    expect(fnv1a64("a")).toBe(0xaf63dc4c8601ec8cn);
    expect(fnv1a64("foobar")).toBe(0x85944171f73967e8n);
  });

  it("mix64 is the splitmix64 finaliser (zero stays zero, one word changes)", () => {
    expect(mix64(0n)).toBe(0n);
    expect(mix64(1n)).not.toBe(1n);
    expect(mix64(1n) < 1n << 64n).toBe(true);
  });

  it("jumpHash stays in range and with one bucket is always 0", () => {
    for (let k = 0n; k < 200n; k++) {
      expect(jumpHash(mix64(k), 1)).toBe(0);
      const b = jumpHash(mix64(k), 7);
      expect(b >= 0 && b < 7).toBe(true);
    }
    expect(() => jumpHash(1n, 0)).toThrow(RangeError);
  });

  it("jumpHash moves a key only to the new bucket when the count grows", () => {
    let moved = 0;
    const n = 2000;
    for (let i = 0; i < n; i++) {
      const key = mix64(fnv1a64(`file-${i}`));
      const before = jumpHash(key, 4);
      const after = jumpHash(key, 5);
      if (after !== before) {
        expect(after).toBe(4);
        moved++;
      }
    }
    // About 1/5 of the keys move; far from the 4/5 that modulo would move.
    expect(moved / n).toBeGreaterThan(0.14);
    expect(moved / n).toBeLessThan(0.26);
  });
});

describe("instance selection", () => {
  it("routes one file to one instance on every call", () => {
    const url = u("/download/ns/model/weights-00001.safetensors?revision=main");
    const first = pickInstance(url, 4, () => 0.99).instance;
    for (let i = 0; i < 50; i++) {
      expect(pickInstance(url, 4, Math.random).instance).toBe(first);
    }
    expect(pickInstance(u("/ns/model/resolve/main/weights-00001.safetensors"), 4).instance).toBe(first);
  });

  it("routes per revision: the revision is part of the key", () => {
    const revs = Array.from({ length: 40 }, (_, i) => `rev${i}`);
    const seen = new Set(revs.map((r) => pickInstance(u(`/download/ns/m/w.bin?revision=${r}`), 4).instance));
    expect(seen.size).toBeGreaterThan(1);
  });

  it.each([2, 4, 8])("spreads many files evenly over %i instances", (count) => {
    const hits = new Array<number>(count).fill(0);
    const n = 1000 * count;
    for (let i = 0; i < n; i++) {
      hits[pickInstance(u(`/download/org${i % 37}/model${i % 11}/shard-${i}.safetensors`), count).instance]!++;
    }
    for (const h of hits) {
      expect(h).toBeGreaterThan(850);
      expect(h).toBeLessThan(1150);
    }
  });

  it("spreads requests that name no file at random", () => {
    const url = u("/api/models/ns/m");
    expect(pickInstance(url, 4, () => 0).instance).toBe(0);
    expect(pickInstance(url, 4, () => 0.5).instance).toBe(2);
    expect(pickInstance(url, 4, () => 0.999999).instance).toBe(3);
    expect(pickInstance(url, 4, () => 1).instance).toBe(3); // a broken random() stays in range
    expect(pickInstance(url, 4, () => 0).key).toBeNull();
  });

  it("uses the key's instance, not random(), for files", () => {
    const url = u("/download-hash/" + "ab".repeat(32) + "?repo=ns/m");
    const r = pickInstance(url, 8, () => 0);
    expect(r.key).toBe("hash\n" + "ab".repeat(32));
    expect(r.instance).toBe(instanceForKey(r.key!, 8));
  });

  it("parses XETPROXY_INSTANCES", () => {
    expect(instanceCount(undefined)).toBe(DEFAULT_INSTANCES);
    expect(instanceCount("")).toBe(DEFAULT_INSTANCES);
    expect(instanceCount(" 6 ")).toBe(6);
    expect(instanceCount("1")).toBe(1);
    expect(instanceCount("0")).toBe(DEFAULT_INSTANCES);
    expect(instanceCount("-3")).toBe(DEFAULT_INSTANCES);
    expect(instanceCount("2.5")).toBe(DEFAULT_INSTANCES);
    expect(instanceCount("four")).toBe(DEFAULT_INSTANCES);
    expect(instanceCount("100000")).toBe(MAX_ROUTED_INSTANCES);
  });

  it("names instances stably", () => {
    expect(instanceName(0)).toBe("xetproxy-0");
    expect(instanceName(7)).toBe("xetproxy-7");
  });
});
