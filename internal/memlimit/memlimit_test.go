package memlimit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDecide(t *testing.T) {
	write := func(t *testing.T, files map[string]string) string {
		t.Helper()
		root := t.TempDir()
		for name, body := range files {
			p := filepath.Join(root, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return root
	}
	env := func(v string) func(string) string { return func(string) string { return v } }
	for _, c := range []struct {
		name       string
		configured int64
		files      map[string]string
		env        string
		limit      int64
		src        Source
		err        string
	}{
		{"environment wins", 1 << 30, map[string]string{"memory.max": "1073741824\n"}, "512MiB", 0, FromEnv, ""},
		{"setting over cgroup", 1000 << 20, map[string]string{"memory.max": "2147483648\n"}, "", 900 << 20, FromConfig, ""},
		{"cgroup v2", 0, map[string]string{"memory.max": "1048576000\n"}, "", 943718400, FromCgroup, ""},
		{"cgroup v2 unlimited", 0, map[string]string{"memory.max": "max\n"}, "", 0, FromNothing, ""},
		{"cgroup v1", 0, map[string]string{"memory/memory.limit_in_bytes": "524288000\n"}, "", 471859200, FromCgroup, ""},
		{"cgroup v1 unlimited", 0, map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"}, "", 0, FromNothing, ""},
		{"no cgroup", 0, nil, "", 0, FromNothing, ""},
		{"garbage", 0, map[string]string{"memory.max": "lots\n"}, "", 0, FromNothing, `"lots" is not a number`},
	} {
		t.Run(c.name, func(t *testing.T) {
			limit, src, err := Decide(c.configured, write(t, c.files), env(c.env))
			if limit != c.limit || src != c.src || (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
				t.Errorf("got %d, %s, %v; want %d, %s, %q", limit, src, err, c.limit, c.src, c.err)
			}
		})
	}
}
