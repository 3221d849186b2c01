// Vitest global setup (runs in Node): a fake Docker Engine API on a unix
// socket, for workerd's container client. Constructing a container-enabled
// Durable Object makes workerd ask the engine about the container; starting
// one makes it look up the bridge network. This fake knows no containers
// and no networks, so every start fails the way an engine that cannot run
// the image fails: that is the start-failure path test/container.test.ts
// drives through the real @cloudflare/containers code.
import fs from "node:fs";
import http from "node:http";

export default async function setup() {
  const socket = process.env.XETPROXY_FAKE_DOCKER_SOCK;
  if (!socket) throw new Error("XETPROXY_FAKE_DOCKER_SOCK is not set (vitest.config.ts sets it)");
  fs.rmSync(socket, { force: true });
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      const json = (status, body) => {
        res.writeHead(status, { "Content-Type": "application/json" });
        res.end(JSON.stringify(body));
      };
      const path = (req.url ?? "").split("?")[0];
      if (req.method === "GET" && path === "/volumes") return json(200, { Volumes: [], Warnings: [] });
      if (req.method === "GET" && path === "/containers/json") return json(200, []);
      if (path.startsWith("/containers/")) return json(404, { message: "No such container" });
      if (path.startsWith("/networks/")) return json(404, { message: "network not found" });
      return json(404, { message: `fake engine: ${req.method} ${path} not implemented` });
    });
  });
  await new Promise((resolve) => server.listen(socket, resolve));
  return async () => {
    await new Promise((resolve) => server.close(resolve));
    fs.rmSync(socket, { force: true });
  };
}
