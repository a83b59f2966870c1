// Command ratelab makes API rate limits visible and testable: a scripts API
// server with transparent limits (serve), a load tester (load), a limit
// discoverer (probe), a JMeter plan reader (jmx), reports (report), and a
// guided demo (demo). Run "ratelab help" for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand. Each lives in its own file and registers
// itself from an init function; the file holds flags and wiring only.
type command struct {
	name    string
	summary string
	// run executes the command with its arguments (without the name).
	run func(ctx context.Context, env *environ, args []string) error
}

// environ is what a command may touch of the outside world, so tests can
// run commands in-process with their own streams.
type environ struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

// exitError carries a specific exit status (e.g. 99 for failed thresholds).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &environ{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	os.Exit(run(ctx, env, os.Args[1:]))
}

// run dispatches to a subcommand and returns the process exit status.
func run(ctx context.Context, env *environ, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(env.stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(env.stderr, "ratelab: unknown command %q\n\n", args[0])
		usage(env.stderr)
		return 2
	}
	err := c.run(ctx, env, args[1:])
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ee):
		if ee.err != nil {
			fmt.Fprintf(env.stderr, "ratelab %s: %v\n", c.name, ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(env.stderr, "ratelab %s: %v\n", c.name, err)
	return 1
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "ratelab makes API rate limits visible and testable.\n\nUsage: ratelab COMMAND [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun \"ratelab COMMAND --help\" for a command's flags.")
}

// newFlagSet returns a flag set for a subcommand that reports errors to
// the caller instead of exiting, with a usage line and description.
func newFlagSet(env *environ, name, usageLine, description string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "Usage: ratelab %s\n\n%s\n\nFlags:\n", usageLine, description)
		fs.PrintDefaults()
	}
	return fs
}

// parseInterspersed parses args with flags allowed after positional
// arguments too ("ratelab jmx plan.jmx --json"), which the flag package
// alone does not allow.
func parseInterspersed(fs *flag.FlagSet, args []string) error {
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		// After a "--" everything is positional.
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}

// envDefault returns the value of the environment variable, or def.
func envDefault(env *environ, name, def string) string {
	if v := env.getenv(name); v != "" {
		return v
	}
	return def
}
