package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The configuration examples of docs/TRANSFORMS.md load: every yaml block
// that starts with a top-level key (a sink is added where it has none).
func TestTransformsDocExamples(t *testing.T) {
	raw, err := os.ReadFile("../../../docs/TRANSFORMS.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(raw), -1)
	n := 0
	for _, b := range blocks {
		src := b[1]
		if !regexp.MustCompile(`^[a-z_]+:`).MatchString(src) {
			continue // a fragment
		}
		if !strings.Contains(src, "\nsinks:") && !strings.HasPrefix(src, "sinks:") {
			src += "sinks:\n  - file: {path: /tmp/x}\n"
		}
		n++
		if _, err := Parse([]byte(src), func(string) (string, bool) { return "x", true }); err != nil {
			t.Errorf("docs/TRANSFORMS.md example does not load: %v\n%s", err, src)
		}
	}
	if n < 3 {
		t.Fatalf("only %d examples found", n)
	}
}
