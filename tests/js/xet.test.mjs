// Drives the official @huggingface/hub client, unmodified, on its Xet path:
// fileDownloadInfo sees Xet, downloadFile returns a XetBlob that asks the
// CAS named by the server for reconstructions and fetches xorb ranges.
//
// Environment (set by tests/xetclient TestJSXetClient; the tests skip
// without it):
//   HUB_URL     the server passed as hubUrl: fakehub itself, or the proxy
//               (FILES must include one whose reconstruction lists several
//               ranges of a xorb under one URL: the client then asks them
//               in one request and needs a multipart/byteranges answer)
//   ORIGIN      every URL the client fetches must start with ORIGIN + "/"
//   XORB_PART   a string every xorb range URL contains
//   FILES       JSON list of {repo, path, size, sha256, slices: [[start, end, sha256]]}
//   URL_LOG     a file the fetched URLs are written to (one per line)
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { downloadFile, fileDownloadInfo } from "@huggingface/hub";
import { recordingFetch as recorder, repoOf, sha256 } from "./support.mjs";

const hubUrl = process.env.HUB_URL;
const skip = hubUrl ? false : "HUB_URL not set: run through go test ./tests/xetclient/ -run TestJSXetClient";
const files = hubUrl ? JSON.parse(process.env.FILES) : [];
const origin = process.env.ORIGIN;
const xorbPart = process.env.XORB_PART;

const seen = [];
const ranges = []; // the Range header of each request, "" for none
const recordingFetch = recorder({ seen, ranges });

after(() => {
	if (process.env.URL_LOG) writeFileSync(process.env.URL_LOG, seen.join("\n") + "\n");
});

test("fileDownloadInfo offers Xet with links on the server's origin", { skip }, async () => {
	for (const f of files) {
		const info = await fileDownloadInfo({ repo: repoOf(f.repo), path: f.path, hubUrl, fetch: recordingFetch });
		assert.ok(info?.xet, `${f.path}: no Xet info`);
		assert.equal(info.size, f.size, `${f.path}: size`);
		assert.ok(info.xet.refreshUrl.href.startsWith(origin + "/"), `${f.path}: xet-auth ${info.xet.refreshUrl.href}`);
		assert.ok(
			info.xet.reconstructionUrl.href.startsWith(origin + "/"),
			`${f.path}: xet-reconstruction-info ${info.xet.reconstructionUrl.href}`,
		);
	}
});

test("downloadFile over Xet: whole files, byte-identical", { skip }, async () => {
	for (const f of files) {
		const blob = await downloadFile({ repo: repoOf(f.repo), path: f.path, hubUrl, fetch: recordingFetch });
		assert.ok(blob, `${f.path}: null`);
		assert.equal(blob.constructor.name, "XetBlob", `${f.path}: not downloaded over Xet`);
		assert.equal(blob.size, f.size);
		assert.equal(sha256(await blob.arrayBuffer()), f.sha256, `${f.path}: content`);
	}
});

test("downloadFile over Xet: slices, byte-identical", { skip }, async () => {
	for (const f of files) {
		const blob = await downloadFile({ repo: repoOf(f.repo), path: f.path, hubUrl, fetch: recordingFetch });
		for (const [start, end, want] of f.slices) {
			const part = blob.slice(start, end);
			assert.equal(part.size, end - start);
			assert.equal(sha256(await part.arrayBuffer()), want, `${f.path} [${start}, ${end})`);
		}
	}
});

test("every URL fetched is on the server's origin, reconstructions and xorbs among them", { skip }, () => {
	assert.ok(seen.length > 0);
	for (const u of seen) {
		assert.ok(u.startsWith(origin + "/"), `fetched ${u.split("?")[0]} off ${origin}`);
	}
	assert.ok(seen.some((u) => u.includes("/v2/reconstructions/")), "no reconstruction query");
	assert.ok(seen.some((u) => u.includes(xorbPart)), `no xorb URL (containing ${xorbPart})`);
	assert.ok(seen.some((u) => u.includes("/xet-read-token/")), "no token route");
	// e.bin's reconstruction lists two ranges of one xorb under one URL
	assert.ok(ranges.some((r) => r.includes(",")), "no multi-range xorb request (multipart/byteranges answer)");
});
