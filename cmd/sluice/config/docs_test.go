package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The configuration examples of the docs load: every yaml block that
// starts with a top-level key sluice knows (a sink is added where it has
// none). Blocks of other programs' configuration (the OpenTelemetry
// Collector's exporters:) are left out.
func TestDocExamples(t *testing.T) {
	for doc, min := range map[string]int{"TRANSFORMS.md": 3, "OTLP.md": 1} {
		raw, err := os.ReadFile("../../../docs/" + doc)
		if err != nil {
			t.Fatal(err)
		}
		blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(raw), -1)
		n := 0
		for _, b := range blocks {
			src := b[1]
			if !regexp.MustCompile(`^[a-z_]+:`).MatchString(src) || regexp.MustCompile(`^(exporters|receivers|processors|service):`).MatchString(src) {
				continue // a fragment, or not sluice's
			}
			if !strings.Contains(src, "\nsinks:") && !strings.HasPrefix(src, "sinks:") {
				src += "sinks:\n  - file: {path: /tmp/x}\n"
			}
			n++
			if _, err := Parse([]byte(src), func(string) (string, bool) { return "x", true }); err != nil {
				t.Errorf("docs/%s example does not load: %v\n%s", doc, err, src)
			}
		}
		if n < min {
			t.Fatalf("docs/%s: only %d examples found", doc, n)
		}
	}
}
