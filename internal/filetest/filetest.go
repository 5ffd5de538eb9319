// Package filetest reads what the file sink wrote, for tests: the JSON
// lines of a directory, and the records' sequence numbers.
package filetest

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// Lines decodes every line of every file the file sink wrote in dir; a
// line that is not JSON fails the test.
func Lines(t testing.TB, dir string) []map[string]any {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson"))
	var out []map[string]any
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				fh.Close()
				t.Fatalf("%s: bad line %q: %v", f, sc.Text(), err)
			}
			out = append(out, m)
		}
		fh.Close()
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
