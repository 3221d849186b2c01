package main

import (
	"context"
	"fmt"

	"github.com/xetproxy/xetproxy/internal/buildinfo"
)

func versionCommand() command {
	return command{
		name:    "version",
		summary: "print the version",
		run: func(ctx context.Context, e env, args []string) int {
			fs := newFlagSet(e, "version", "")
			if code, ok := parseFlags(fs, args); !ok {
				return code
			}
			if fs.NArg() > 0 {
				fs.Usage()
				return exitUsage
			}
			fmt.Fprintf(e.stdout, "xetproxy %s\n", buildinfo.Version())
			return exitOK
		},
	}
}
