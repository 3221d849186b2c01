// Package engineconf builds the download engine (proxy.Engine) and
// everything it stands on — the upstream transport, the Hub client, the
// CAS client with its credential-free transfer client, and the chunk
// cache tiers — from one Config. Every command that downloads (`serve`,
// `download`) goes through New, so the two cannot drift apart: same
// transport tuning, same redirect rule for presigned transfers, same user
// agent, same cache layout, same bound on the wait at shutdown. `ls`, which
// needs the Hub alone, takes the same Hub client from HubClient.
//
// It reads no flags and no environment: each command parses its own
// command line in one place (server.Config.RegisterFlags for serve, the
// download flag set for download) and fills a Config.
//
// Layers: engineconf sits between the commands (and server) and what it
// wires: it imports proxy, hub, casclient and cache, and nothing imports
// it but cmd and server.
//
//	cmd/xetproxy serve ──► server.Config ─┐
//	                                      ├─► engineconf.New ──► proxy.Engine, close
//	cmd/xetproxy download ── flags ───────┘        │
//	                                               ├─ hub.Client      (Transport)
//	                                               ├─ casclient       (Transport; transfers via
//	                                               │                   casclient.FetchClient)
//	                                               └─ NewCache        (memory, disk, S3 tiers)
package engineconf
