package file

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicelog/sluice/sinks"
	"github.com/sluicelog/sluice/sinks/sinktest"
)

type fileDest struct{ dir string }

func (d fileDest) NewSink(t *testing.T) sinks.Sink {
	cfg := Config{Path: d.dir}
	cfg.SetDefaults()
	s, err := New(cfg, "conf", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (d fileDest) Delivered(t *testing.T) []int {
	files, _ := filepath.Glob(filepath.Join(d.dir, "*.ndjson"))
	var ns []int
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			var rec struct{ N int }
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			ns = append(ns, rec.N)
		}
		fh.Close()
	}
	return ns
}

func TestConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Destination { return fileDest{dir: t.TempDir()} })
}
