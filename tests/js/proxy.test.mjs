// Drives the official @huggingface/hub client, unmodified, against the
// xetproxy server (hubUrl = the proxy), which sits in front of fakehub.
//
// Environment (set by tests/e2e TestHFJSClient; the tests skip without it):
//   PROXY_URL     the proxy base URL, passed to the client as hubUrl
//   FILES         JSON list of {repo, path, size, sha256, slices: [[start, end, sha256]]}
//   PRIVATE_REPO  a private repo id, PRIVATE_PATH a file in it
//   READER_TOKEN  a Hub token that may read PRIVATE_REPO
//   PROXY_MODE    "xet" (the proxy serves Xet clients as their CAS) or
//                 "plain" (--xet=false: every file as plain HTTP)
//
// Every request the client makes goes through a fetch wrapper that records
// its URL and tags it with X-Test-Client: hfjs, so the Go side can check in
// fakehub's request log that none of them reached the Hub or CAS directly.
import { test } from "node:test";
import assert from "node:assert/strict";
import { downloadFile, fileDownloadInfo, listFiles } from "@huggingface/hub";
import { recordingFetch, repoOf, sha256 } from "./support.mjs";

const proxyUrl = process.env.PROXY_URL;
const skip = proxyUrl ? false : "PROXY_URL not set: run through go test ./tests/e2e/ -run TestHFJSClient";
const files = proxyUrl ? JSON.parse(process.env.FILES) : [];
const xetMode = process.env.PROXY_MODE === "xet";

const seen = [];
const taggedFetch = recordingFetch({ seen, addHeaders: { "X-Test-Client": "hfjs" } });

test("fileDownloadInfo: Xet info on the proxy for Xet files in Xet mode, none otherwise", { skip }, async () => {
	for (const f of files) {
		const info = await fileDownloadInfo({ repo: repoOf(f.repo), path: f.path, hubUrl: proxyUrl, fetch: taggedFetch });
		assert.ok(info, `${f.path}: no info`);
		if (xetMode && f.xet) {
			assert.ok(info.xet, `${f.path}: a Xet file not offered as Xet in Xet mode`);
			assert.ok(String(info.xet.reconstructionUrl).startsWith(proxyUrl + "/"), `${f.path}: reconstruction URL ${info.xet.reconstructionUrl}`);
		} else {
			assert.equal(info.xet, undefined, `${f.path}: the client was offered Xet`);
		}
		assert.equal(info.size, f.size, `${f.path}: size`);
	}
});

test("downloadFile whole files, byte-identical", { skip }, async () => {
	for (const f of files) {
		const blob = await downloadFile({ repo: repoOf(f.repo), path: f.path, hubUrl: proxyUrl, fetch: taggedFetch });
		assert.ok(blob, `${f.path}: null`);
		assert.equal(blob.size, f.size);
		assert.equal(sha256(await blob.arrayBuffer()), f.sha256, `${f.path}: content`);
	}
});

test("downloadFile slices, byte-identical", { skip }, async () => {
	for (const f of files) {
		for (const [start, end, want] of f.slices ?? []) {
			const blob = await downloadFile({ repo: repoOf(f.repo), path: f.path, hubUrl: proxyUrl, fetch: taggedFetch });
			const part = blob.slice(start, end);
			assert.equal(part.size, end - start);
			assert.equal(sha256(await part.arrayBuffer()), want, `${f.path} [${start}, ${end})`);
		}
	}
});

test("missing file is null, private file needs the token", { skip }, async () => {
	const missing = await downloadFile({ repo: repoOf(files[0].repo), path: "no/such/file.bin", hubUrl: proxyUrl, fetch: taggedFetch });
	assert.equal(missing, null);
	const repo = repoOf(process.env.PRIVATE_REPO);
	const path = process.env.PRIVATE_PATH;
	await assert.rejects(downloadFile({ repo, path, hubUrl: proxyUrl, fetch: taggedFetch }));
	const blob = await downloadFile({ repo, path, hubUrl: proxyUrl, fetch: taggedFetch, accessToken: process.env.READER_TOKEN });
	assert.ok(blob && blob.size > 0);
	await blob.arrayBuffer();
});

test("listFiles through the proxy: xetHash in Xet mode only", { skip }, async () => {
	let n = 0;
	let withHash = 0;
	for await (const entry of listFiles({ repo: repoOf(files[0].repo), recursive: true, hubUrl: proxyUrl, fetch: taggedFetch })) {
		if (xetMode) {
			if (entry.xetHash !== undefined) {
				assert.match(entry.xetHash, /^[0-9a-f]{64}$/, `${entry.path}: xetHash`);
				withHash++;
			}
		} else {
			assert.equal(entry.xetHash, undefined, `${entry.path}: xetHash leaked`);
		}
		n++;
	}
	assert.ok(n > 0);
	if (xetMode) {
		assert.ok(withHash > 0, "no xetHash in Xet mode");
	}
});

test("every request went to the proxy", { skip }, () => {
	assert.ok(seen.length > 0);
	for (const url of seen) {
		assert.ok(url.startsWith(proxyUrl + "/"), `request outside the proxy: ${url}`);
	}
});
