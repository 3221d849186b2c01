package main

import (
	"context"
	"fmt"
)

func helpCommand() command {
	return command{
		name:    "help",
		summary: "show the commands, or the flags of one command",
		run: func(ctx context.Context, e env, args []string) int {
			if len(args) == 0 {
				printUsage(e.stdout)
				return exitOK
			}
			for _, c := range commands() {
				if c.name == args[0] && c.name != "help" {
					return c.run(ctx, env{stdin: e.stdin, stdout: e.stdout, stderr: e.stdout}, []string{"-h"})
				}
			}
			fmt.Fprintf(e.stderr, "xetproxy help: unknown command %q\n", args[0])
			return exitUsage
		},
	}
}
