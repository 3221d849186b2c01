// Routing: which container instance serves a request.
//
// Each container instance keeps its own chunk cache (memory and, with
// XETPROXY_CACHE_DIR, its disk). Requests for the same file therefore go to
// the same instance: the route key names the file (repo type, repo,
// revision, path; or the Xet hash; or, for xorb ranges, the xorb hash), a 64-bit hash of the key is fed to jump
// consistent hashing over the configured instance count. Jump hashing moves
// only 1/(n+1) of the files when the count grows from n to n+1, so raising
// XETPROXY_INSTANCES keeps most caches warm. Requests that name no file
// (/api/..., /readyz, anything else) are spread at random.
//
// Everything here is pure: no bindings, no I/O.

/** The instance count used when XETPROXY_INSTANCES is unset. */
export const DEFAULT_INSTANCES = 4;
/**
 * Hard upper bound for XETPROXY_INSTANCES. The real bound is max_instances
 * in wrangler.jsonc (test/config.test.ts checks the committed vars against
 * it); this only stops a typo from fanning out to thousands of objects.
 */
export const MAX_ROUTED_INSTANCES = 64;

/** Parses XETPROXY_INSTANCES: a whole number in 1..MAX_ROUTED_INSTANCES, else the default. */
export function instanceCount(raw: string | undefined): number {
  if (raw === undefined || raw.trim() === "") return DEFAULT_INSTANCES;
  const n = Number(raw.trim());
  if (!Number.isInteger(n) || n < 1) return DEFAULT_INSTANCES;
  return Math.min(n, MAX_ROUTED_INSTANCES);
}

/** The Durable Object name of instance i. Stable: renaming moves every cache. */
export function instanceName(i: number): string {
  return `xetproxy-${i}`;
}

// Path prefixes of non-model repos, as the server reads them (models have none).
const REPO_TYPES: Record<string, string> = { datasets: "dataset", spaces: "space" };

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s; // malformed escapes: the raw text is still a stable key
  }
}

function fileKey(type: string, repo: string[], revision: string, path: string[]): string {
  return ["file", type, repo.join("/"), revision, path.join("/")].join("\n");
}

const RECONSTRUCTION_VERSIONS: ReadonlySet<string> = new Set(["v1", "v2"]);

// The route key of a /cas/... path (the segments after "cas"), or null.
function casKey(rest: string[]): string | null {
  if (rest.length === 3 && RECONSTRUCTION_VERSIONS.has(rest[0]!) && rest[1] === "reconstructions" && rest[2] !== "") {
    return `hash\n${rest[2]!.toLowerCase()}`;
  }
  if (rest.length === 2 && rest[0] === "xorbs" && rest[1] !== "") {
    return `xorb\n${rest[1]!.toLowerCase()}`;
  }
  return null;
}

/**
 * The route key of a request, or null when the request names no single file.
 *
 *   /download-hash/{hash}?repo=...           hash\n{hash}
 *   /download/[datasets/|spaces/]{ns}/{name}/{path}?revision=R
 *                                            file\n{type}\n{ns/name}\n{R or main}\n{path}
 *   /[datasets/|spaces/]{repo}/resolve/{rev}/{path}
 *                                            file\n{type}\n{repo}\n{rev}\n{path}
 *   /cas/v1/reconstructions/{hash}           hash\n{hash}
 *   /cas/v2/reconstructions/{hash}           hash\n{hash}
 *   /cas/xorbs/{xorb hash}?...               xorb\n{xorb hash}
 *
 * Both file routes give the same key for the same file, so a client mixing
 * them still hits one instance. A Xet client's reconstruction query names
 * the file by its Xet hash, so it shares the key of /download-hash: the
 * instance that answers it is the one whose cache holds that file's plan.
 * Xorb ranges are keyed by the xorb alone: files that share a xorb (dedup
 * across files and revisions) then read it from one instance's cache. Segments are percent-decoded, so the
 * revision refs%2Fpr%2F1 of a resolve URL and ?revision=refs/pr/1 agree.
 */
export function routeKey(url: URL): string | null {
  const segments = url.pathname.split("/").slice(1);
  if (segments.length === 0) return null;

  if (segments[0] === "download-hash") {
    const hash = segments[1] ?? "";
    return hash === "" ? null : `hash\n${decodeSegment(hash).toLowerCase()}`;
  }

  if (segments[0] === "cas") {
    return casKey(segments.slice(1).map(decodeSegment));
  }

  if (segments[0] === "download") {
    let rest = segments.slice(1).map(decodeSegment);
    let type = "model";
    const t = REPO_TYPES[rest[0] ?? ""];
    if (t !== undefined) {
      type = t;
      rest = rest.slice(1);
    }
    // {ns}/{name}/{path...}, as the server requires.
    if (rest.length < 3 || rest.some((s) => s === "")) return null;
    const revision = url.searchParams.get("revision") || "main";
    return fileKey(type, rest.slice(0, 2), revision, rest.slice(2));
  }

  // HF_ENDPOINT mirror: {prefix}{repo}/resolve/{rev}/{path...}
  const decoded = segments.map(decodeSegment);
  let type = "model";
  let start = 0;
  const t = REPO_TYPES[decoded[0] ?? ""];
  if (t !== undefined) {
    type = t;
    start = 1;
  }
  // The repo id is one or two segments; resolve follows it.
  for (const repoLen of [2, 1]) {
    const r = start + repoLen;
    if (decoded[r] === "resolve" && decoded.length > r + 2 && decoded[decoded.length - 1] !== "") {
      const repo = decoded.slice(start, r);
      if (repo.some((s) => s === "")) return null;
      return fileKey(type, repo, decoded[r + 1]!, decoded.slice(r + 2));
    }
  }
  return null;
}

const MASK64 = (1n << 64n) - 1n;
const FNV64_OFFSET = 0xcbf29ce484222325n;
const FNV64_PRIME = 0x100000001b3n;
const encoder = new TextEncoder();

/** FNV-1a, 64-bit, over the UTF-8 bytes of s. */
export function fnv1a64(s: string): bigint {
  let h = FNV64_OFFSET;
  for (const b of encoder.encode(s)) {
    h ^= BigInt(b);
    h = (h * FNV64_PRIME) & MASK64;
  }
  return h;
}

/** The splitmix64 finaliser: spreads FNV's weak low bits over the word. */
export function mix64(z: bigint): bigint {
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

/**
 * Jump consistent hash (Lamping and Veach, 2014): maps a 64-bit key to a
 * bucket in [0, buckets) so that growing buckets by one moves a key only
 * to the new bucket, and only with probability 1/buckets.
 */
export function jumpHash(key: bigint, buckets: number): number {
  if (!Number.isInteger(buckets) || buckets < 1) throw new RangeError(`buckets must be >= 1, got ${buckets}`);
  let b = -1;
  let j = 0;
  let k = key & MASK64;
  while (j < buckets) {
    b = j;
    k = (k * 2862933555777941757n + 1n) & MASK64;
    j = Math.floor((b + 1) * (2 ** 31 / Number((k >> 33n) + 1n)));
  }
  return b;
}

/** The instance for a route key. */
export function instanceForKey(key: string, count: number): number {
  return jumpHash(mix64(fnv1a64(key)), count);
}

export interface Route {
  /** Instance index in [0, count). */
  instance: number;
  /** The route key, or null when the request was spread at random. */
  key: string | null;
}

/**
 * Picks the instance for a request URL: by route key when it names a file,
 * else uniformly at random (random() in [0, 1), injectable for tests).
 */
export function pickInstance(url: URL, count: number, random: () => number = Math.random): Route {
  const key = routeKey(url);
  if (key !== null) return { instance: instanceForKey(key, count), key };
  return { instance: Math.min(count - 1, Math.floor(random() * count)), key: null };
}
