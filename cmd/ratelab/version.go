package main

import (
	"context"
	"fmt"
	"runtime"

	"ratelab"
)

func init() {
	register(&command{name: "version", summary: "print ratelab's version", run: runVersion})
}

func runVersion(_ context.Context, env *environ, args []string) error {
	fs := newFlagSet(env, "version", "version", "Prints the version of ratelab and of the Go toolchain that built it.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	_, err := fmt.Fprintf(env.stdout, "ratelab %s (%s %s/%s)\n", ratelab.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}
