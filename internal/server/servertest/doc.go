// Package servertest starts real xetproxy servers for end-to-end tests:
// the real engine built by engineconf behind a server.Server on a
// loopback port, stopped when the test ends.
//
// Tests of package server itself cannot import it (the import would be
// a cycle); the external test packages (server_test and the suites
// under tests/) share it so that a server is built one way everywhere.
package servertest
