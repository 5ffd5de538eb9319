package deploy_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// exported lists the metrics sluice can export, by name, with their kind:
// every sluice_* name given to a prometheus *Opts literal or to
// prometheus.NewDesc in sluice's (non-test) code, and the Go and process
// collectors' metrics.
func exported(t *testing.T) map[string]string {
	t.Helper()
	m, err := scanExported()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// scanExported reads the source tree once for all tests.
var scanExported = sync.OnceValues(func() (map[string]string, error) {
	out := map[string]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "bin" || d.Name() == "data") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				sel, ok := n.Type.(*ast.SelectorExpr)
				if !ok || !strings.HasSuffix(sel.Sel.Name, "Opts") {
					return true
				}
				for _, e := range n.Elts {
					if kv, ok := e.(*ast.KeyValueExpr); ok && isIdent(kv.Key, "Name") {
						if name := literal(kv.Value); strings.HasPrefix(name, "sluice_") {
							out[name] = strings.ToLower(strings.TrimSuffix(sel.Sel.Name, "Opts"))
						}
					}
				}
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "NewDesc" && len(n.Args) > 0 {
					if name := literal(n.Args[0]); strings.HasPrefix(name, "sluice_") {
						out[name] = "gauge"
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mfs, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	for _, mf := range mfs {
		out[mf.GetName()] = strings.ToLower(mf.GetType().String())
	}
	return out, nil
})

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

func literal(e ast.Expr) string {
	if bl, ok := e.(*ast.BasicLit); ok && bl.Kind == token.STRING {
		if s, err := strconv.Unquote(bl.Value); err == nil {
			return s
		}
	}
	return ""
}

// The metric scan finds what sluice registers (so that the dashboard
// check below has something to fail against).
func TestExportedMetrics(t *testing.T) {
	m := exported(t)
	want := map[string]string{
		"sluice_ingest_records_total":       "counter",
		"sluice_sink_records_total":         "counter",
		"sluice_sink_delivery_seconds":      "histogram",
		"sluice_sink_consumer_lag_messages": "gauge",
		"process_resident_memory_bytes":     "gauge",
	}
	for name, kind := range want {
		if m[name] != kind {
			t.Errorf("%s: %q, want %q", name, m[name], kind)
		}
	}
}

// panel is the part of a Grafana panel checked here.
type panel struct {
	Title      string
	Type       string
	Datasource *struct{ Type, UID string }
	Targets    []struct {
		Expr  string
		RefID string `json:"refId"`
	}
	Panels []panel
}

// metricName finds metric names in PromQL: identifiers followed by a
// selector, a range or a closing parenthesis, not functions or labels.
var metricName = regexp.MustCompile(`\b((?:sluice|go|process)_[a-zA-Z0-9_]+)\b`)

func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile("grafana/sluice.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title      string
		UID        string
		Panels     []panel
		Templating struct {
			List []struct {
				Name, Type string
				Query      any
			}
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana/sluice.json: %v", err)
	}
	if dash.Title == "" || dash.UID == "" {
		t.Error("no title or uid")
	}
	if !slices.ContainsFunc(dash.Templating.List, func(v struct {
		Name, Type string
		Query      any
	}) bool {
		return v.Name == "datasource" && v.Type == "datasource"
	}) {
		t.Error("no datasource variable: the dashboard would only work with one named data source")
	}
	known := exported(t)
	used := map[string]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 || p.Datasource == nil || p.Datasource.Type != "prometheus" {
				t.Errorf("panel %q: no Prometheus queries", p.Title)
			}
			for _, tg := range p.Targets {
				names := metricName.FindAllString(tg.Expr, -1)
				if len(names) == 0 {
					t.Errorf("panel %q: %q queries no metric", p.Title, tg.Expr)
				}
				for _, n := range names {
					base := n
					for _, suffix := range []string{"_bucket", "_sum", "_count"} {
						if b, ok := strings.CutSuffix(n, suffix); ok && known[b] == "histogram" {
							base = b
						}
					}
					if _, ok := known[base]; !ok {
						t.Errorf("panel %q queries %s, which sluice does not export", p.Title, n)
					}
					if strings.HasSuffix(n, "_bucket") && known[base] != "histogram" {
						t.Errorf("panel %q: %s is not a histogram", p.Title, n)
					}
					if known[base] == "counter" && !regexp.MustCompile(`(rate|increase)\(`+n+`\b`).MatchString(tg.Expr) {
						t.Errorf("panel %q: the counter %s is shown without rate() or increase()", p.Title, n)
					}
					used[base] = true
				}
			}
		}
	}
	walk(dash.Panels)
	// What the dashboard is for: ingest rate, per-sink throughput and lag,
	// retries, dead letters, latency.
	for _, m := range []string{"sluice_ingest_records_total", "sluice_sink_records_total", "sluice_sink_consumer_lag_messages",
		"sluice_sink_records_retried_total", "sluice_sink_write_errors_total", "sluice_sink_delivery_seconds",
		"sluice_sink_write_seconds", "sluice_queue_publish_seconds"} {
		if !used[m] {
			t.Errorf("the dashboard does not show %s", m)
		}
	}
}
