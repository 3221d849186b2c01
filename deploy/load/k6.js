// Load test of a running xetproxy with k6 (https://k6.io; not a dependency
// of the project). Same mix as deploy/load/vegeta.sh:
//   70% Range requests at random offsets of a large file (what parallel
//       downloaders such as aria2c or hf_transfer send),
//   20% whole downloads of a small file,
//   10% GET /health.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 deploy/load/k6.js
//   k6 run -e BASE_URL=https://xetproxy.<account>.workers.dev -e TOKEN=$HF_TOKEN \
//          -e REPO=org/model -e FILE=model.safetensors -e SMALL=config.json \
//          -e RATE=50 -e DURATION=2m deploy/load/k6.js
//
// Variables (-e NAME=value): BASE_URL (required), REPO (xetproxy/demo-model),
// FILE (model.safetensors), SMALL (config.json), TOKEN, RATE requests per
// second (20), DURATION (30s), RANGE_SIZE bytes (1048576), VUS (50).
// Defaults fit `xetproxy demo`. Thresholds fail the run when more than 1% of
// requests fail or a Range request's p95 exceeds 5 s. Point it only at your
// own deployment.
import http from "k6/http";
import { check, fail } from "k6";

const BASE = (__ENV.BASE_URL || "").replace(/\/$/, "");
const REPO = __ENV.REPO || "xetproxy/demo-model";
const FILE = __ENV.FILE || "model.safetensors";
const SMALL = __ENV.SMALL || "config.json";
const RANGE_SIZE = Number(__ENV.RANGE_SIZE || 1 << 20);
const RATE = Number(__ENV.RATE || 20);
const VUS = Number(__ENV.VUS || 50);

const headers = { "User-Agent": "xetproxy-load/k6" };
if (__ENV.TOKEN) headers.Authorization = `Bearer ${__ENV.TOKEN}`;

export const options = {
  scenarios: {
    mix: {
      executor: "constant-arrival-rate",
      rate: RATE,
      timeUnit: "1s",
      duration: __ENV.DURATION || "30s",
      preAllocatedVUs: Math.min(VUS, RATE * 2),
      maxVUs: VUS,
    },
  },
  thresholds: {
    http_req_failed: ["rate<0.01"],
    "http_req_duration{kind:range}": ["p(95)<5000"],
    checks: ["rate>0.99"],
  },
  // Bodies are counted, not kept: a Range body is checked by its length.
  discardResponseBodies: true,
};

export function setup() {
  if (!BASE) fail("set BASE_URL, e.g. k6 run -e BASE_URL=http://127.0.0.1:8080 deploy/load/k6.js");
  const res = http.head(`${BASE}/download/${REPO}/${FILE}`, { headers });
  const size = Number(res.headers["Content-Length"]);
  if (res.status !== 200 || !(size > 0)) fail(`HEAD ${REPO}/${FILE}: status ${res.status}, no size`);
  return { size, rangeSize: Math.min(RANGE_SIZE, size) };
}

export default function (data) {
  const roll = Math.random();
  if (roll < 0.7) {
    const first = Math.floor(Math.random() * (data.size - data.rangeSize + 1));
    const last = first + data.rangeSize - 1;
    const res = http.get(`${BASE}/download/${REPO}/${FILE}`, {
      headers: Object.assign({ Range: `bytes=${first}-${last}` }, headers),
      tags: { kind: "range" },
    });
    check(res, {
      "range: 206": (r) => r.status === 206,
      "range: Content-Range": (r) => r.headers["Content-Range"] === `bytes ${first}-${last}/${data.size}`,
      "range: length": (r) => Number(r.headers["Content-Length"]) === data.rangeSize,
    });
  } else if (roll < 0.9) {
    const res = http.get(`${BASE}/download/${REPO}/${SMALL}`, { headers, tags: { kind: "small" } });
    check(res, { "small: 200": (r) => r.status === 200 });
  } else {
    const res = http.get(`${BASE}/health`, { headers, tags: { kind: "health" } });
    check(res, { "health: 200": (r) => r.status === 200 });
  }
}
