// Downloads one file with the official @huggingface/hub client on its Xet
// path (downloadFile returns a XetBlob) and prints the sha256 of the bytes,
// the byte count and the number of xorb URLs fetched as one JSON line.
// Used by bench/xetbench. Environment: HUB_URL, HUB_JS_MODULE (path of the
// package's index.mjs), REPO, FILE.
import { createHash } from "node:crypto";
import { pathToFileURL } from "node:url";

const { downloadFile } = await import(pathToFileURL(process.env.HUB_JS_MODULE).href);
let xorbFetches = 0;
const blob = await downloadFile({
	repo: process.env.REPO,
	path: process.env.FILE,
	hubUrl: process.env.HUB_URL,
	fetch: (input, init) => {
		const url = typeof input === "object" && !(input instanceof URL) ? input.url : String(input);
		if (url.includes("/cas/xorbs/")) xorbFetches++;
		return fetch(input, init);
	},
});
if (!blob) {
	throw new Error("file not found");
}
if (blob.constructor.name !== "XetBlob") {
	throw new Error(`not downloaded over Xet (${blob.constructor.name})`);
}
const h = createHash("sha256");
let n = 0;
for await (const part of blob.stream()) {
	h.update(part);
	n += part.byteLength;
}
console.log(JSON.stringify({ sha256: h.digest("hex"), bytes: n, xorbFetches }));
