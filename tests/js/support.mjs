// Helpers shared by the client tests in this folder (not a test file:
// node --test only runs *.test.mjs here).
import { createHash } from "node:crypto";

// repoOf turns "datasets/ns/name" into the client's repo designation.
export function repoOf(id) {
	for (const type of ["dataset", "space"]) {
		if (id.startsWith(`${type}s/`)) {
			return { type, name: id.slice(type.length + 2) };
		}
	}
	return { type: "model", name: id };
}

// sha256 is the hex SHA-256 of an ArrayBuffer, typed array or Buffer.
export function sha256(buf) {
	return createHash("sha256").update(Buffer.from(buf)).digest("hex");
}

// recordingFetch returns a fetch that records every URL asked in seen (and
// the Range header of each in ranges) and may add headers to each request,
// then hands it to the global fetch unchanged otherwise.
export function recordingFetch({ seen, ranges = [], addHeaders = {} }) {
	return async (input, init = {}) => {
		const isRequest = typeof input === "object" && !(input instanceof URL);
		seen.push(isRequest ? input.url : String(input));
		const headers = new Headers(init.headers ?? (isRequest ? input.headers : undefined));
		ranges.push(headers.get("Range") ?? "");
		if (Object.keys(addHeaders).length === 0) {
			return fetch(input, init);
		}
		for (const [k, v] of Object.entries(addHeaders)) headers.set(k, v);
		return fetch(input, { ...init, headers });
	};
}
