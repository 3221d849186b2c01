// Package e2e holds the end-to-end tests of the xetproxy server: a real
// server (real download engine) on a loopback port in front of fakehub,
// driven over real sockets by Go's HTTP client, curl, aria2c, the official
// @huggingface/hub client (node, tests/js/proxy.test.mjs), and the real
// binary for the SIGTERM drain. Tests that need a missing tool skip, except
// in CI (CI=true), where they fail.
package e2e
