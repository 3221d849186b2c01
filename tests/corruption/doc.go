// Package corruption holds the corruption matrix: end-to-end tests, over
// real sockets, of the promise that xetproxy never gives a wrong byte as a
// complete answer. A fake Hub (internal/fakehub) flips one byte inside a
// chunk of a file's xorb, chosen so that the chunk still decodes; xetproxy
// servers (the real engine, with no cache, a disk cache, or a disk cache
// and a shared S3 bucket on gofakes3) serve the file to Go clients, with
// and without TE: trailers, to curl and to the official @huggingface/hub
// client. The tests check that no whole-file answer completes with wrong
// bytes, and that once the Hub is healthy again no cache tier, no restart
// and no second instance gives a wrong byte.
//
// It is a package of its own so that its fixture stays small: the matrix
// runs in seconds under -race.
package corruption
