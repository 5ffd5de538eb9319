// Package loadtest generates log traffic like a fleet of node forwarders and
// measures an aggregator the way hey measures a web service: sluice's own
// load generator (cmd/loadgen) and `make bench`.
//
// Records look like container logs: nginx access lines, JSON application
// logs and multi-kilobyte stack traces, in configurable proportions, with
// Kubernetes-style tags across a number of pods. Every record carries the
// run's id (lg_run) and a sequence number (lg_seq, ten digits, as a string),
// so that Verify can find each acknowledged record at the destination.
// Chunks are encoded once per worker; only the sequence numbers and chunk
// ids are rewritten in place before each send, so the generator is not the
// bottleneck.
package loadtest

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// Workload shapes the records.
type Workload struct {
	// Weights of the record kinds; all zero means 70 nginx, 25 JSON, 5
	// stack traces.
	Nginx float64 `yaml:"nginx"`
	JSON  float64 `yaml:"json"`
	Stack float64 `yaml:"stack"`
	// StackBytes is the size of a stack trace record's log (default 4096).
	StackBytes int `yaml:"stack_bytes"`
	// NginxBytes, when set, lengthens nginx lines to this many bytes with a
	// browser user agent (they are about 95 bytes without it).
	NginxBytes int `yaml:"nginx_bytes"`
	// Pods spreads the records over this many pods (tags), default 10.
	Pods int `yaml:"pods"`
	// Namespaces the pods are in, default default, shop, pay.
	Namespaces []string `yaml:"namespaces"`
}

func (w *Workload) setDefaults() {
	if w.Nginx == 0 && w.JSON == 0 && w.Stack == 0 {
		w.Nginx, w.JSON, w.Stack = 70, 25, 5
	}
	if w.StackBytes <= 0 {
		w.StackBytes = 4096
	}
	if w.Pods <= 0 {
		w.Pods = 10
	}
	if len(w.Namespaces) == 0 {
		w.Namespaces = []string{"default", "shop", "pay"}
	}
}

// pod is one source of records.
type pod struct {
	tag, name, namespace, container string
}

func (w *Workload) pods() []pod {
	out := make([]pod, w.Pods)
	for i := range out {
		ns := w.Namespaces[i%len(w.Namespaces)]
		name := fmt.Sprintf("app-%d-7d9f8b6c5-x%04d", i%5, i)
		id := strings.Repeat(fmt.Sprintf("%08x", i+1), 8)
		out[i] = pod{
			tag:  fmt.Sprintf("kube.var.log.containers.%s_%s_app-%s.log", name, ns, id),
			name: name, namespace: ns, container: "app",
		}
	}
	return out
}

const browserAgent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 "

// line returns the log text of one record, chosen by the weights.
func (w *Workload) line(r *rand.Rand, i int) string {
	total := w.Nginx + w.JSON + w.Stack
	x := r.Float64() * total
	switch {
	case x < w.Nginx:
		line := fmt.Sprintf(`10.1.%d.%d - - [22/Nov/2026:07:34:52 +0000] "GET /api/items/%d HTTP/1.1" 200 %d "-" "`,
			r.IntN(256), r.IntN(256), i, 200+r.IntN(4000))
		agent := "hey/0.0.1"
		if pad := w.NginxBytes - len(line) - 1; pad > len(agent) {
			agent = strings.Repeat(browserAgent, pad/len(browserAgent)+1)[:pad]
		}
		return line + agent + `"`
	case x < w.Nginx+w.JSON:
		levels := []string{"info", "info", "info", "warn", "error"}
		return fmt.Sprintf(`{"level":"%s","msg":"handled request","path":"/api/items/%d","duration_ms":%d,"user":"u%d"}`,
			levels[r.IntN(len(levels))], i, r.IntN(500), r.IntN(10000))
	}
	var b strings.Builder
	b.WriteString("panic: runtime error: index out of range [5] with length 5\n\ngoroutine 1 [running]:\n")
	for f := 0; b.Len() < w.StackBytes; f++ {
		fmt.Fprintf(&b, "main.handler%d(0xc000%06x, 0x%x)\n\t/app/internal/server/handler.go:%d +0x%x\n", f, r.IntN(1<<24), r.IntN(1<<16), 10+f, r.IntN(1<<12))
	}
	return b.String()[:w.StackBytes]
}
