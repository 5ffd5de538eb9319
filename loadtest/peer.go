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
		cfg += fmt.Sprintf("    Name   es\n    Host   %s\n    Port   %s\n    Path   /insert/elasticsearch\n    Index  logs\n    Suppress_Type_Name On\n", u.Hostname(), u.Port())
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

// verifyVictoriaLogs counts the run's records in VictoriaLogs, and the
// distinct lg_seq among them, which tells duplicates.
func verifyVictoriaLogs(ctx context.Context, base, run string, acked int) (Verification, error) {
	query := fmt.Sprintf("lg_run:%q | stats count() n, count_uniq(lg_seq) u", run)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/select/logsql/query",
		strings.NewReader(url.Values{"query": {query}}.Encode()))
	if err != nil {
		return Verification{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return Verification{}, err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var c struct{ N, U json.Number }
	if res.StatusCode != http.StatusOK || json.Unmarshal(body, &c) != nil {
		return Verification{Acked: acked, Lost: acked}, fmt.Errorf("verify: VictoriaLogs: %s: %s", res.Status, body)
	}
	n, _ := c.N.Int64()
	u, _ := c.U.Int64()
	v := Verification{Acked: acked, Found: min(int(u), acked), Duplicates: int(n - u)}
	v.Lost = acked - v.Found
	return v, nil
}
