// Package filetest reads what the file sink wrote, for tests: the JSON
// lines of a directory, and the records' sequence numbers.
package filetest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// Lines decodes every line of every file the file sink wrote in dir; a
// line that is not JSON, or a last line without its newline, fails the
// test. Call it once the sink is done writing; while it writes, Written.
func Lines(t testing.TB, dir string) []map[string]any {
	t.Helper()
	return lines(t, dir, false)
}

// Written is Lines for a sink that may be writing: a file's last line
// without its newline is one being written, left out.
func Written(t testing.TB, dir string) []map[string]any {
	t.Helper()
	return lines(t, dir, true)
}

func lines(t testing.TB, dir string, writing bool) []map[string]any {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson"))
	var out []map[string]any
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		complete := raw[:bytes.LastIndexByte(raw, '\n')+1]
		if len(complete) < len(raw) && !writing {
			t.Fatalf("%s: last line without its newline: %q", f, raw[len(complete):])
		}
		for len(complete) > 0 {
			line, rest, _ := bytes.Cut(complete, []byte("\n"))
			complete = rest
			var m map[string]any
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatalf("%s: bad line %q: %v", f, line, err)
			}
			out = append(out, m)
		}
	}
	return out
}

// Seqs counts the lines of each sequence number: the "seq" field, or the
// field at path through nested objects ("attributes", "seq"). A line
// without one fails the test.
func Seqs(t testing.TB, lines []map[string]any, path ...string) map[int]int {
	t.Helper()
	if len(path) == 0 {
		path = []string{"seq"}
	}
	got := map[int]int{}
	for _, l := range lines {
		var v any = l
		for _, k := range path {
			m, _ := v.(map[string]any)
			v = m[k]
		}
		f, ok := v.(float64)
		if !ok {
			t.Fatalf("line without %v: %v", path, l)
		}
		got[int(f)]++
	}
	return got
}

// Head is the first ten of s, for messages.
func Head(s []int) []int {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}
