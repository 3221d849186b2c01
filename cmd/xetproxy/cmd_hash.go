package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/xetproxy/xetproxy/internal/xethash"
)

const hashSynopsis = "[--chunks] [--json] [FILE|-]..."

// hashHelp documents the output formats; it follows the flag list in -h.
const hashHelp = `
Prints the Xet file hash of every FILE: chunks it with the Xet gearhash
chunker and hashes the chunks into their Merkle tree, as the Hub does, in
memory bounded whatever the file size. "-", or no FILE at all, reads
standard input.

Output, one line per file as sha256sum prints it:

  <file hash>  <name>

A name holding a backslash, newline or carriage return is escaped as \\, \n
and \r and its line starts with a backslash, as in sha256sum.

--chunks follows each file line with one line per chunk, indented by two
spaces: decimal offset and length in the file, then the chunk hash:

  <file hash>  <name>
    <offset> <length> <chunk hash>

--json prints one JSON object per line and file instead, adding the SHA-256
of the content (plain hex); "chunks" is present only with --chunks:

  {"path":"<name>","size":<bytes>,"file_hash":"<hash>","sha256":"<hex>",
   "chunks":[{"offset":<n>,"length":<n>,"hash":"<hash>"},...]}

Hashes are in the Xet text form (four little-endian words). A file that
cannot be read is reported on standard error and the others are still
hashed; the exit status is then 1.
`

func hashCommand() command {
	return command{
		name:    "hash",
		summary: "print the Xet file hash (and chunks) of files, like sha256sum",
		run:     runHash,
	}
}

// hashConfig is the parsed command line of hash.
type hashConfig struct {
	chunks     bool
	json       bool
	spoolLimit int // chunk records kept in memory before spilling to disk
}

func runHash(ctx context.Context, e env, args []string) int {
	fset := newFlagSet(e, "hash", hashSynopsis)
	cfg := hashConfig{spoolLimit: defaultSpoolLimit}
	fset.BoolVar(&cfg.chunks, "chunks", false, "after each file, list its chunks: offset, length, chunk hash")
	fset.BoolVar(&cfg.json, "json", false, "print one JSON object per file, with size and SHA-256")
	if code, ok := parseFlags(fset, args); !ok {
		if code == exitOK { // -h: the flags were printed, add the formats
			fmt.Fprint(e.stderr, hashHelp)
		} else {
			fmt.Fprintln(e.stderr, "\nRun 'xetproxy help hash' for the output formats.")
		}
		return code
	}
	names := fset.Args()
	if len(names) == 0 {
		names = []string{"-"}
	}

	w := bufio.NewWriterSize(e.stdout, 64<<10)
	status := exitOK
	for _, name := range names {
		err := hashOne(ctx, e.stdin, w, name, cfg)
		if err == nil {
			// Flush per file: results appear as they are known, in order
			// with the errors on stderr.
			err = w.Flush()
			if err != nil {
				err = &outputError{err}
			}
		}
		if err == nil {
			continue
		}
		status = exitError
		var oe *outputError
		if errors.As(err, &oe) {
			fmt.Fprintf(e.stderr, "xetproxy hash: write output: %v\n", oe.err)
			return exitError
		}
		if ctx.Err() != nil {
			fmt.Fprintf(e.stderr, "xetproxy hash: %v\n", ctx.Err())
			return exitError
		}
		fmt.Fprintf(e.stderr, "xetproxy hash: %s: %v\n", name, pathless(err))
	}
	return status
}

// outputError marks a failure to write the results, which ends the command
// instead of moving on to the next file.
type outputError struct{ err error }

func (o *outputError) Error() string { return "write output: " + o.err.Error() }
func (o *outputError) Unwrap() error { return o.err }

// pathless drops the operation and path of an *fs.PathError, since the
// message is already prefixed with the name the user gave.
func pathless(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}

// hashOne hashes one named input and writes its result to w.
func hashOne(ctx context.Context, stdin io.Reader, w *bufio.Writer, name string, cfg hashConfig) error {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}

	spool := chunkSpool{limit: max(cfg.spoolLimit, 1)}
	defer spool.close()
	opt := xethash.Options{SHA256: cfg.json}
	if cfg.chunks {
		opt.OnChunk = func(c xethash.Chunk) error { return spool.add(len(c.Data), c.Hash) }
	}
	sum, err := xethash.HashReader(ctx, r, opt)
	if err != nil {
		return err
	}

	if cfg.json {
		err = writeHashJSON(w, name, sum, cfg.chunks, &spool)
	} else {
		err = writeHashText(w, name, sum, cfg.chunks, &spool)
	}
	if err != nil {
		return err
	}
	if _, err := w.Write(nil); err != nil { // the sticky error of an earlier write
		return &outputError{err}
	}
	return nil
}

func writeHashText(w *bufio.Writer, name string, sum xethash.Sum, chunks bool, spool *chunkSpool) error {
	escaped := escapeName(name)
	if escaped != name {
		w.WriteByte('\\')
	}
	w.WriteString(sum.FileHash.String())
	w.WriteString("  ")
	w.WriteString(escaped)
	w.WriteByte('\n')
	if !chunks {
		return nil
	}
	var line []byte
	return spool.each(func(off uint64, r chunkRecord) error {
		line = append(line[:0], "  "...)
		line = strconv.AppendUint(line, off, 10)
		line = append(line, ' ')
		line = strconv.AppendUint(line, uint64(r.length), 10)
		line = append(line, ' ')
		line = append(line, r.hash.String()...)
		line = append(line, '\n')
		if _, err := w.Write(line); err != nil {
			return &outputError{err}
		}
		return nil
	})
}

// escapeName escapes a file name for a sha256sum-style line.
func escapeName(name string) string {
	if !strings.ContainsAny(name, "\\\n\r") {
		return name
	}
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", `\r`).Replace(name)
}

func writeHashJSON(w *bufio.Writer, name string, sum xethash.Sum, chunks bool, spool *chunkSpool) error {
	var path bytes.Buffer
	enc := json.NewEncoder(&path)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(name); err != nil {
		return err
	}
	w.WriteString(`{"path":`)
	w.Write(bytes.TrimSuffix(path.Bytes(), []byte("\n")))
	w.WriteString(`,"size":`)
	w.WriteString(strconv.FormatUint(sum.Size, 10))
	w.WriteString(`,"file_hash":"`)
	w.WriteString(sum.FileHash.String())
	w.WriteString(`","sha256":"`)
	w.WriteString(hex.EncodeToString(sum.SHA256[:]))
	w.WriteByte('"')
	if chunks {
		w.WriteString(`,"chunks":[`)
		var line []byte
		first := true
		err := spool.each(func(off uint64, r chunkRecord) error {
			line = line[:0]
			if !first {
				line = append(line, ',')
			}
			first = false
			line = append(line, `{"offset":`...)
			line = strconv.AppendUint(line, off, 10)
			line = append(line, `,"length":`...)
			line = strconv.AppendUint(line, uint64(r.length), 10)
			line = append(line, `,"hash":"`...)
			line = append(line, r.hash.String()...)
			line = append(line, `"}`...)
			if _, err := w.Write(line); err != nil {
				return &outputError{err}
			}
			return nil
		})
		if err != nil {
			return err
		}
		w.WriteByte(']')
	}
	w.WriteString("}\n")
	return nil
}
