// Drives the official @huggingface/hub client, unmodified, against fakehub.
//
// Environment (set by internal/fakehub's TestJSClient):
//   HUB_URL      fakehub base URL, passed to the client as hubUrl
//   HF_TOKEN     a Hub token that may write UPLOAD_REPO and read PRIVATE_REPO
//   UPLOAD_REPO  repo (Hub URL form, e.g. "org/js-upload") the client uploads to
//   GO_FILES     JSON list of {repo, path, size, sha256} ingested by the Go side
//   PRIVATE_REPO a private repo holding at least one of GO_FILES
import { test } from "node:test";
import assert from "node:assert/strict";
import { uploadFiles, downloadFile, listFiles, pathsInfo, fileDownloadInfo } from "@huggingface/hub";
import { repoOf, sha256 } from "./support.mjs";

const skip = process.env.HUB_URL ? false : "HUB_URL not set: run through go test ./internal/fakehub/ -run TestJSClient";
const hubUrl = process.env.HUB_URL;
const accessToken = process.env.HF_TOKEN;
const uploadRepo = repoOf(process.env.UPLOAD_REPO ?? "");
const goFiles = skip ? [] : JSON.parse(process.env.GO_FILES);
const privateRepo = process.env.PRIVATE_REPO;

// SplitMix64 bytes, as the Go tests generate them.
function randomBytes(seed, n) {
	const out = new Uint8Array(n);
	let state = BigInt.asUintN(64, BigInt(seed));
	for (let i = 0; i < n; i += 8) {
		state = BigInt.asUintN(64, state + 0x9e3779b97f4a7c15n);
		let z = state;
		z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n);
		z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn);
		z = z ^ (z >> 31n);
		for (let k = 0; k < 8 && i + k < n; k++) {
			out[i + k] = Number((z >> BigInt(8 * k)) & 0xffn);
		}
	}
	return out;
}

// fastRandom is a cheaper generator for tens of MB (xorshift32).
function fastRandom(seed, n) {
	const out = new Uint8Array(n);
	let x = seed >>> 0 || 1;
	for (let i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >>> 17;
		x ^= x << 5;
		out[i] = x & 0xff;
	}
	return out;
}

// Compressible text.
function text(n) {
	const words = ["xet", "chunk", "xorb", "shard", "hub", "merkle", "range", "term", "proxy", "cache"];
	let s = "";
	for (let i = 0; s.length < n; i++) {
		s += words[(i * 7 + (i >> 3)) % words.length] + (i % 13 === 0 ? ".\n" : " ");
	}
	return new TextEncoder().encode(s.slice(0, n));
}

// bf16-like weights: a random mantissa byte and a narrow exponent byte.
function bf16(seed, n) {
	const out = fastRandom(seed, n);
	for (let i = 1; i < n; i += 2) {
		out[i] = 0x3c + (out[i] & 3);
	}
	return out;
}

async function bytesOf(blob) {
	return new Uint8Array(await blob.arrayBuffer());
}

// slices returns [a, b) pairs at odd offsets for a file of size n.
function slices(n) {
	const out = [
		[0, 1],
		[n - 1, n],
		[1, 7],
		[0, n],
	];
	for (const [a, len] of [
		[65535, 3],
		[131071, 70000],
		[Math.floor(n / 3) + 1, 12345],
		[Math.floor(n / 2) - 7, 1_000_003],
		[n - 200_001, 200_000],
	]) {
		if (a >= 0 && a < n) {
			out.push([a, Math.min(n, a + len)]);
		}
	}
	return out.filter(([a, b]) => a >= 0 && b <= n && a < b);
}

async function checkDownload(repo, path, want, token = accessToken) {
	const blob = await downloadFile({ repo, path, hubUrl, accessToken: token });
	assert.ok(blob, `${path}: downloadFile returned null`);
	assert.equal(blob.size, want.length, `${path}: size`);
	const got = await bytesOf(blob);
	assert.equal(sha256(got), sha256(want), `${path}: whole-file content differs`);
	if (want.length > 0) {
		for (const [a, b] of slices(want.length)) {
			const part = await bytesOf(blob.slice(a, b));
			assert.ok(Buffer.from(part).equals(Buffer.from(want.subarray(a, b))), `${path}: slice [${a}, ${b}) differs`);
		}
	}
}

const random = fastRandom(4, 20 << 20);
const uploads = [
	{ path: "empty.bin", data: new Uint8Array(0) },
	{ path: "README.md", data: text(300) },
	{ path: "one.bin", data: randomBytes(1, 1) },
	{ path: "small.bin", data: randomBytes(2, 100_000) },
	{ path: "corpus.txt", data: text(3_000_000) },
	{ path: "model.safetensors", data: bf16(3, 12 << 20) },
	{ path: "random.bin", data: random },
];

// The second upload shares most chunks with random.bin: the client finds
// them through the global dedup API and references the stored xorb.
const edited = new Uint8Array(random.length + 77_777);
edited.set(random.subarray(0, 9 << 20));
edited.set(fastRandom(99, 2 << 20), 9 << 20);
edited.set(random.subarray(11 << 20), 11 << 20);
edited.set(fastRandom(5, 77_777), random.length);
const second = [{ path: "dir/sub/edited.bin", data: edited }];

test("uploadFiles then downloadFile round-trips every file", { skip }, async () => {
	const out = await uploadFiles({
		repo: uploadRepo,
		accessToken,
		hubUrl,
		files: uploads.map((f) => ({ path: f.path, content: new Blob([f.data]) })),
	});
	assert.match(out.commit.oid, /^[0-9a-f]{40}$/);

	const out2 = await uploadFiles({
		repo: uploadRepo,
		accessToken,
		hubUrl,
		files: second.map((f) => ({ path: f.path, content: new Blob([f.data]) })),
	});
	assert.notEqual(out2.commit.oid, out.commit.oid);

	for (const f of [...uploads, ...second]) {
		await checkDownload(uploadRepo, f.path, f.data);
	}

	const missing = await fileDownloadInfo({ repo: uploadRepo, path: "no/such/file", hubUrl, accessToken });
	assert.equal(missing, null);
});

test("listFiles (paginated) and pathsInfo see the uploaded files with their Xet hashes", { skip }, async () => {
	const listed = [];
	for await (const e of listFiles({ repo: uploadRepo, recursive: true, hubUrl, accessToken })) {
		listed.push(e);
	}
	const paths = new Set(listed.filter((e) => e.type === "file").map((e) => e.path));
	for (const f of [...uploads, ...second]) {
		assert.ok(paths.has(f.path), `listFiles misses ${f.path}`);
	}
	assert.ok(listed.some((e) => e.type === "directory" && e.path === "dir/sub"));

	const info = await pathsInfo({ repo: uploadRepo, paths: ["random.bin", "README.md", "dir"], hubUrl, accessToken });
	const byPath = Object.fromEntries(info.map((e) => [e.path, e]));
	assert.match(byPath["random.bin"].xetHash, /^[0-9a-f]{64}$/);
	assert.equal(byPath["random.bin"].lfs.oid, sha256(random));
	assert.equal(byPath["README.md"].xetHash, undefined);
	assert.equal(byPath["dir"].type, "directory");
});

test("files ingested by the Go side download identically", { skip }, async () => {
	assert.ok(goFiles.length > 0);
	for (const f of goFiles) {
		const repo = repoOf(f.repo);
		const blob = await downloadFile({ repo, path: f.path, hubUrl, accessToken });
		assert.ok(blob, `${f.repo}/${f.path}: null`);
		assert.equal(blob.size, f.size);
		const whole = await bytesOf(blob);
		assert.equal(sha256(whole), f.sha256, `${f.repo}/${f.path}: content differs`);
		for (const [a, b] of slices(f.size)) {
			const part = await bytesOf(blob.slice(a, b));
			assert.ok(Buffer.from(part).equals(Buffer.from(whole.subarray(a, b))), `${f.path}: slice [${a}, ${b}) differs`);
		}
	}
});

test("a private repo is refused without a token", { skip }, async () => {
	const f = goFiles.find((g) => g.repo === privateRepo);
	assert.ok(f, "no Go file in the private repo");
	await assert.rejects(downloadFile({ repo: repoOf(privateRepo), path: f.path, hubUrl }));
});
