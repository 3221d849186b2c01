// Downloads one file with the official @huggingface/hub client
// (downloadFile, Xet on) and streams it to disk. Used by bench/downloadbench.
// Environment: HUB_URL, HUB_JS_MODULE (path of the package's index.mjs),
// REPO, FILE, OUT.
import { createWriteStream } from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { pathToFileURL } from "node:url";

const { downloadFile } = await import(pathToFileURL(process.env.HUB_JS_MODULE).href);
const blob = await downloadFile({
	repo: process.env.REPO,
	path: process.env.FILE,
	hubUrl: process.env.HUB_URL,
});
if (!blob) {
	throw new Error("file not found");
}
await pipeline(Readable.fromWeb(blob.stream()), createWriteStream(process.env.OUT));
