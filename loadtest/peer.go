package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Fluent Bit outputs of the peer runs.
const (
	fluentBitFile = "file" // out_file in its default format: a line a record
	fluentBitNull = "null" // out null: ingest alone
	fluentBitES   = "es"   // out es into VictoriaLogs
)

// fluentBitConfig is Fluent Bit in the aggregator role as the performance
// targets measure it: the forward input with filesystem buffering
// (storage.type filesystem, acknowledging a chunk once it is buffered), and
// one output.
func fluentBitConfig(dir string, port int, output, vl string) (string, error) {
	cfg := fmt.Sprintf(`[SERVICE]
    Flush         1
    Log_Level     warn
    storage.path  %s
    storage.sync  normal

[INPUT]
    Name              forward
    Listen            127.0.0.1
    Port              %d
    storage.type      filesystem
    Buffer_Chunk_Size 1M
    Buffer_Max_Size   16M

[OUTPUT]
    Match  *
`, filepath.Join(dir, "storage"), port)
	switch output {
	case fluentBitFile:
		out := filepath.Join(dir, "out")
		if err := os.MkdirAll(out, 0o755); err != nil {
			return "", err
		}
		cfg += fmt.Sprintf("    Name   file\n    Path   %s\n    File   fluent-bit.ndjson\n", out)
	case fluentBitNull:
		cfg += "    Name   null\n"
	case fluentBitES:
		u, err := url.Parse(vl)
		if err != nil {
			return "", err
		}
		// Compress gzip as sluice's es sink does by default, so that both
		// send the server the same bytes to inflate.
		cfg += fmt.Sprintf("    Name   es\n    Host   %s\n    Port   %s\n    Path   /insert/elasticsearch\n    Index  logs\n    Suppress_Type_Name On\n    Compress gzip\n", u.Hostname(), u.Port())
	default:
		return "", fmt.Errorf("fluent-bit: unknown output %q", output)
	}
	return cfg, nil
}

// startFluentBit runs a fluent-bit binary with fluentBitConfig.
func startFluentBit(bin, output string) func(ctx context.Context, dir string, sc Scenario, vl string) (*server, error) {
	return func(ctx context.Context, dir string, sc Scenario, vl string) (*server, error) {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		cfg, err := fluentBitConfig(dir, port, output, vl)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, "fluent-bit.conf")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			return nil, err
		}
		cmd := exec.Command(bin, "-c", path)
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		s := &server{cmd: cmd, forward: fmt.Sprintf("127.0.0.1:%d", port)}
		switch output {
		case fluentBitFile:
			s.target = &Target{FileDir: filepath.Join(dir, "out")}
		case fluentBitES:
			s.target = &Target{VictoriaLogsURL: vl}
		}
		if err := waitTCP(ctx, s.forward); err != nil {
			s.stop()
			return nil, fmt.Errorf("fluent-bit: %w", err)
		}
		return s, nil
	}
}

// waitTCP waits up to 30 s for addr to accept a connection.
func waitTCP(ctx context.Context, addr string) error {
	deadline := time.Now().Add(30 * time.Second)
	var d net.Dialer
	for time.Now().Before(deadline) {
		if c, err := d.DialContext(ctx, "tcp", addr); err == nil {
			return c.Close()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s after 30 s", addr)
}

// StartVictoriaLogs runs a victoria-logs binary on a loopback port with its
// data in dir, waits until it answers, and returns its base URL and how to
// stop it. The bench writes into it; tests use it as a real Elasticsearch
// bulk API.
func StartVictoriaLogs(ctx context.Context, bin, dir string) (stop func(), base string, err error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin, "-storageDataPath="+dir, "-httpListenAddr="+addr, "-loggerLevel=WARN")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	s := &server{cmd: cmd}
	base = "http://" + addr
	if err := waitHTTP(ctx, base+"/health"); err != nil {
		s.stop()
		return nil, "", fmt.Errorf("victoria-logs: %w", err)
	}
	return s.stop, base, nil
}

// victoriaLogsWaiter waits for a VictoriaLogs server at little cost.
//
// Counting a run's distinct records (count_uniq of lg_seq) reads every one
// of them: half a second for a million records. Polled every
// 50 ms while the records arrived, it took the machine from the server and
// from the aggregator being measured, the more so the longer that
// aggregator took. And the server shows a row to queries only about a
// second after taking it in, which every end-to-end time counted too. So
// the waiter asks the server to make what it holds searchable
// (/internal/force_flush), counts the run's rows, which is cheap, until
// they are as many as were acknowledged, notes the time (the end of the
// run), and only then counts the distinct records.
type victoriaLogsWaiter struct {
	base, run string
	arrived   time.Time // when the server held as many rows as were acked
}

// poll returns what the server holds of the run's acked records: the rows
// counted until they are enough (or last is set: the wait is over), then
// the distinct records counted.
func (w *victoriaLogsWaiter) poll(ctx context.Context, acked int, last bool) (Verification, error) {
	if w.arrived.IsZero() {
		var c struct{ N json.Number }
		if err := victoriaLogsFlush(ctx, w.base); err != nil {
			return Verification{Acked: acked, Lost: acked}, err
		}
		if err := logsQLStats(ctx, w.base, fmt.Sprintf("lg_run:%q | stats count() n", w.run), &c); err != nil {
			return Verification{Acked: acked, Lost: acked}, err
		}
		n, _ := c.N.Int64()
		if n < int64(acked) && !last {
			return Verification{Acked: acked, Found: int(n), Lost: acked - int(n)}, nil
		}
		w.arrived = time.Now()
	}
	var c struct{ N, U json.Number }
	if err := logsQLStats(ctx, w.base, fmt.Sprintf("lg_run:%q | stats count() n, count_uniq(lg_seq) u", w.run), &c); err != nil {
		return Verification{Acked: acked, Lost: acked}, err
	}
	n, _ := c.N.Int64()
	u, _ := c.U.Int64()
	v := Verification{Acked: acked, Found: min(int(u), acked), Duplicates: int(n - u), LastWrite: w.arrived}
	v.Lost = acked - v.Found
	return v, nil
}

// victoriaLogsFlush makes every row the server has taken in searchable.
func victoriaLogsFlush(ctx context.Context, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/internal/force_flush", nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("verify: VictoriaLogs: %w", err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("verify: VictoriaLogs: force_flush: %s", res.Status)
	}
	return nil
}

// logsQLStats runs a LogsQL query that ends in stats, whose answer is one
// JSON object, and decodes it into out.
func logsQLStats(ctx context.Context, base, query string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/select/logsql/query",
		strings.NewReader(url.Values{"query": {query}}.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("verify: VictoriaLogs: %w", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || json.Unmarshal(body, out) != nil {
		return fmt.Errorf("verify: VictoriaLogs: %q: %s: %s", query, res.Status, body)
	}
	return nil
}
