package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"

	"github.com/xetproxy/xetproxy/internal/engineconf"
	"github.com/xetproxy/xetproxy/internal/hub"
)

const lsSynopsis = "[--revision R] [--repo-type model|dataset|space] REPO [PATH]"

const lsHelp = `
Lists the files of a Hugging Face repo (under PATH, recursively), one per
line: size in bytes, Xet file hash ("-" for a file stored in git, or whose
hash the Hub does not show), path.

  <size>  <xet hash or ->  <path>
` + dlExitCodes

func lsCommand() command {
	return command{
		name:    "ls",
		summary: "list the files of a Hub repo with sizes and Xet hashes",
		run:     runLs,
	}
}

func runLs(ctx context.Context, e env, args []string) int {
	fs := newFlagSet(e, "ls", lsSynopsis)
	usage := fs.Usage
	fs.Usage = func() { usage(); fmt.Fprint(e.stderr, lsHelp) }
	var o hubOptions
	o.register(fs)
	pos, code, ok := parseInterspersed(fs, args)
	if !ok {
		return code
	}
	if len(pos) < 1 || len(pos) > 2 {
		fs.Usage()
		return exitUsage
	}
	repo, err := o.repo(pos[0])
	if err != nil {
		fmt.Fprintf(e.stderr, "xetproxy ls: %v\n", err)
		return exitUsage
	}
	dir := ""
	if len(pos) == 2 {
		dir = pos[1]
	}
	hc := engineconf.HubClient(engineconf.Config{HubURL: o.endpointURL()})
	token := o.userToken()
	entries, err := listFiles(ctx, hc, token, repo, o.revision, dir)
	if err != nil {
		fmt.Fprintf(e.stderr, "xetproxy ls: %v%s\n", err, authHint(err, token))
		return exitCodeFor(err)
	}
	w := bufio.NewWriter(e.stdout)
	for _, en := range entries {
		h := "-"
		if en.XetHash != nil {
			h = en.XetHash.String()
		}
		fmt.Fprintf(w, "%12d  %-64s  %s\n", en.Size, h, en.Path)
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintf(e.stderr, "xetproxy ls: %v\n", err)
		return exitError
	}
	return exitOK
}

// listFiles lists the files under dir; a dir that is a file lists that file.
func listFiles(ctx context.Context, hc *hub.Client, token string, repo hub.Repo, rev, dir string) ([]hub.Entry, error) {
	entries, err := hc.List(ctx, token, repo, rev, dir, true)
	var he *hub.Error
	if dir != "" && errors.As(err, &he) && (he.Status == 404 || he.Status == 400) && he.Code != "RepoNotFound" && he.Code != "RevisionNotFound" {
		infos, ierr := hc.PathsInfo(ctx, token, repo, rev, []string{dir})
		if ierr != nil {
			return nil, ierr
		}
		if len(infos) == 0 {
			return nil, err
		}
		entries, err = infos, nil
	}
	if err != nil {
		return nil, err
	}
	files := entries[:0]
	for _, en := range entries {
		if !en.IsDir() {
			files = append(files, en)
		}
	}
	if dir != "" && len(files) == 0 {
		return nil, fmt.Errorf("%s in %s at %s: %w", dir, repo, rev, errNoSuchPath)
	}
	return files, nil
}
