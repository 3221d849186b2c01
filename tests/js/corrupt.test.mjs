// Drives the official @huggingface/hub client, unmodified, against the
// xetproxy server while fakehub serves a damaged chunk of the file, then
// once it is healthy again.
//
// Environment (set by tests/corruption TestCorruptJSClient; the tests skip
// without it):
//   PROXY_URL   the proxy base URL, passed to the client as hubUrl
//   REPO, FILE  the file (a model repo id and a path in it)
//   SIZE        its size, SHA256 its right content (hex)
//   EXPECT      "failure": the Hub damages a chunk, every download must
//               fail; "exact": the Hub is healthy, every download must
//               give the right bytes
//   CACHE_DIR   an empty directory for downloadFileToCacheDir
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { downloadFile, downloadFileToCacheDir } from "@huggingface/hub";
import { sha256 } from "./support.mjs";

const proxyUrl = process.env.PROXY_URL;
const skip = proxyUrl ? false : "PROXY_URL not set: run through go test ./tests/corruption/ -run TestCorruptJSClient";
const repo = { type: "model", name: process.env.REPO };
const path = process.env.FILE;
const size = Number(process.env.SIZE);
const want = process.env.SHA256;
const expect = process.env.EXPECT;

// attempt runs a download and returns its bytes or its error.
async function attempt(download) {
	try {
		return { bytes: Buffer.from(await download()) };
	} catch (error) {
		return { error };
	}
}

function check(what, r) {
	if (expect === "failure") {
		assert.ok(
			r.error,
			`${what}: completed while the Hub damages a chunk: ${r.bytes?.length} bytes, ` +
				(r.bytes && sha256(r.bytes) === want ? "the right ones (premise broken)" : "WRONG bytes"),
		);
		console.log(`${what} failed as it must: ${r.error?.cause ?? r.error}`);
		return;
	}
	assert.ifError(r.error);
	assert.equal(r.bytes.length, size, `${what}: size`);
	assert.equal(sha256(r.bytes), want, `${what}: content`);
}

// files lists every regular file under dir.
async function files(dir) {
	const out = [];
	for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
		if (e.isFile()) {
			out.push(join(e.parentPath ?? e.path, e.name));
		}
	}
	return out;
}

test("downloadFile: the whole file as a blob", { skip }, async () => {
	check(
		"downloadFile",
		await attempt(async () => {
			const blob = await downloadFile({ repo, path, hubUrl: proxyUrl });
			assert.ok(blob, "no such file");
			return blob.arrayBuffer();
		}),
	);
});

test("downloadFileToCacheDir: a file on disk", { skip }, async () => {
	const cacheDir = process.env.CACHE_DIR;
	const r = await attempt(async () => readFile(await downloadFileToCacheDir({ repo, path, hubUrl: proxyUrl, cacheDir })));
	// Whatever happened, no complete blob on disk holds other bytes: only a
	// download still marked .incomplete may.
	for (const f of await files(cacheDir)) {
		if (f.includes("/blobs/") && !f.endsWith(".incomplete")) {
			assert.equal(sha256(await readFile(f)), want, `${f}: a complete file of wrong bytes`);
		}
	}
	check("downloadFileToCacheDir", r);
});
