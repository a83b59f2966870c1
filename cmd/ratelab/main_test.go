package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// runCmd runs the CLI in-process and returns its exit status and output.
func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := &environ{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
	code := run(context.Background(), env, args)
	return code, out.String(), errOut.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := runCmd(t, "version")
	if code != 0 || !strings.HasPrefix(out, "ratelab ") {
		t.Fatalf("version: code %d, output %q", code, out)
	}
}

func TestUnknownCommand(t *testing.T) {
	code, _, errOut := runCmd(t, "nope")
	if code != 2 || !strings.Contains(errOut, `unknown command "nope"`) {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
}

func TestBadFlag(t *testing.T) {
	code, _, errOut := runCmd(t, "version", "--nope")
	if code != 1 || !strings.Contains(errOut, "flag provided but not defined: -nope") {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
}
