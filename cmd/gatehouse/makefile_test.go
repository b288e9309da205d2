package main

// The tests in this file run the repository's Makefile with a stand-in for
// the go command, so that they check what each target prints and runs
// without compiling anything.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildNotice is part of the line that every compiling target prints
// before it compiles.
const buildNotice = "(the first build takes a few minutes)..."

// runMake runs make with args in the repository root, with GO set to a
// script that prints its arguments after "fake-go", and returns the
// output lines.
func runMake(t *testing.T, args ...string) []string {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	fakeGo := filepath.Join(t.TempDir(), "go")
	if err := os.WriteFile(fakeGo, []byte("#!/bin/sh\necho \"fake-go $*\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command("make", append([]string{"-C", "../..", "--no-print-directory", "GO=" + fakeGo}, args...)...)
	// A parent make passes its flags, such as -n or -s, down in the
	// environment, so they are cleared. Without a database URL, the test
	// target skips its second pass on PostgreSQL.
	cmd.Env = append(os.Environ(), "MAKEFLAGS=", "MFLAGS=", "MAKELEVEL=", "GATEHOUSE_TEST_DATABASE_URL=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// firstIndex returns the index of the first line that contains substr, or
// -1.
func firstIndex(lines []string, substr string) int {
	for i, line := range lines {
		if strings.Contains(line, substr) {
			return i
		}
	}
	return -1
}

func TestMakeTargetsAnnounceBuild(t *testing.T) {
	for _, target := range []string{"build", "run", "vet", "test", "test-short"} {
		t.Run(target, func(t *testing.T) {
			lines := runMake(t, target)
			notice := firstIndex(lines, buildNotice)
			if notice < 0 {
				t.Fatalf("make %s printed no line with %q:\n%s", target, buildNotice, strings.Join(lines, "\n"))
			}
			if first := firstIndex(lines, "fake-go "); first >= 0 && first < notice {
				t.Errorf("make %s ran go at line %d, before the build notice at line %d:\n%s", target, first, notice, strings.Join(lines, "\n"))
			}
		})
	}
}

func TestMakeRunKeepsHTTPAddr(t *testing.T) {
	lines := runMake(t, "run", "HTTP_ADDR=127.0.0.1:18081")
	if firstIndex(lines, "fake-go run ./cmd/gatehouse serve --dev --http-addr 127.0.0.1:18081") < 0 {
		t.Errorf("make run did not run go run with the HTTP_ADDR given:\n%s", strings.Join(lines, "\n"))
	}
	if notice := firstIndex(lines, buildNotice); notice != 0 {
		t.Errorf("build notice at line %d, want the first line:\n%s", notice, strings.Join(lines, "\n"))
	}
}

// bench starts PostgreSQL when no database is set, so this test only
// prints its recipe with make -n and never runs it.
func TestMakeBenchAnnouncesBuild(t *testing.T) {
	lines := runMake(t, "-n", "bench")
	notice := firstIndex(lines, "echo \"building the benchmarks "+buildNotice)
	first := firstIndex(lines, "/go test -run")
	if notice < 0 || first < notice {
		t.Errorf("make -n bench: build notice at line %d, first go command at line %d; want the notice first:\n%s", notice, first, strings.Join(lines, "\n"))
	}
}
