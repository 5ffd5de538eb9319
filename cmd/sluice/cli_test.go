package main

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sluicelog/sluice/api"
	"github.com/sluicelog/sluice/cmd/sluice/app"
	"github.com/sluicelog/sluice/cmd/sluice/app/apptest"
	"github.com/sluicelog/sluice/cmd/sluice/config"
	"github.com/sluicelog/sluice/internal/forwardtest"
)

// startSluice runs sluice in the test with an API token.
func startSluice(t *testing.T, token string) *app.App {
	t.Helper()
	a, _ := apptest.Start(t, func(c *config.Config) { c.API.Auth.Tokens = []string{token} })
	return a
}

// sluiceCmd runs an operator command and returns its exit code and output.
func sluiceCmd(args ...string) (int, string, string) {
	var out, errOut strings.Builder
	code := runCommand(args[0], args[1:], &out, &errOut)
	return code, out.String(), errOut.String()
}

// The operator commands over a real sluice's API: status as JSON and as a
// table, rewind, the dead-letter commands, and the errors an operator
// meets: a bad token, an unknown sink, an API that is not there.
func TestOperatorCommands(t *testing.T) {
	a := startSluice(t, "s3cret")
	base := "http://" + a.APIAddr().String()
	conn, err := forwardtest.Dial(a.ForwardAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SendAck(forwardtest.Packed("app", forwardtest.Entry(time.Now(), map[string]any{"log": "hi"}), forwardtest.Options{Chunk: "c1"}), "c1", 10*time.Second); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := sluiceCmd("status", "--api", base, "--token", "s3cret", "-o", "json")
	if code != 0 {
		t.Fatalf("status: %d %s", code, errOut)
	}
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	if len(st.Sinks) != 1 || st.Sinks[0].Name != "file" || st.Stream.LastSeq < 1 || len(st.Replicas) != 1 {
		t.Errorf("status: %+v", st)
	}
	code, out, _ = sluiceCmd("status", "--api", base, "--token", "s3cret", "-o", "table")
	if code != 0 || !strings.Contains(out, "SINK") || !strings.Contains(out, "file") || !strings.Contains(out, "REPLICA") || !strings.Contains(out, "(this)") {
		t.Errorf("status table: %d\n%s", code, out)
	}

	t.Setenv("SLUICE_API_TOKEN", "s3cret")
	code, out, errOut = sluiceCmd("rewind", "file", "--api", base, "--seq", "1", "-o", "table")
	if code != 0 || !strings.Contains(out, "from stream sequence 1") {
		t.Errorf("rewind: %d %q %q", code, out, errOut)
	}
	code, out, _ = sluiceCmd("dlq", "ls", "file", "--api", base, "-o", "json")
	if code != 0 || strings.TrimSpace(out) != "[]" && strings.TrimSpace(out) != "null" {
		t.Errorf("dlq ls: %d %q", code, out)
	}
	code, out, _ = sluiceCmd("dlq", "replay", "file", "--api", base, "-o", "table")
	if code != 0 || !strings.Contains(out, "0 dead letters") {
		t.Errorf("dlq replay: %d %q", code, out)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"status", "--api", base, "--token", "wrong"}, 1, "refused the token"},
		{[]string{"rewind", "nosuch", "--api", base, "--seq", "1"}, 1, `sink "nosuch": not found`},
		{[]string{"dlq", "show", "999", "--api", base}, 1, "not found"},
		{[]string{"status", "--api", "http://" + closedAddr(t)}, 1, "cannot reach the sluice API"},
		{[]string{"top", "--api", "http://" + closedAddr(t)}, 1, "cannot reach the sluice API"},
		{[]string{"top", "--api", base, "--token", "wrong"}, 1, "refused the token"},
		{[]string{"rewind", "file", "--api", base}, 2, "exactly one of --seq and --time"},
		{[]string{"status", "--api", "localhost:8080"}, 2, "want http://host:port"},
		{[]string{"nosuch"}, 2, "unknown command"},
	} {
		code, _, errOut := sluiceCmd(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, %q; want %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// sluice tap streams what a sink receives, up to its limit, and a tap
// ends when its client goes.
func TestTapCommand(t *testing.T) {
	a := startSluice(t, "s3cret")
	base := "http://" + a.APIAddr().String()
	t.Setenv("SLUICE_API_TOKEN", "s3cret")
	client, err := api.NewClient(base, "s3cret", "")
	if err != nil {
		t.Fatal(err)
	}
	sessions := func() float64 {
		s, err := client.Series(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return s.Sum("sluice_tap_sessions")
	}
	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := sluiceCmd("tap", "--api", base, "--stage", "file", "--match", "app.**", "--limit", "3", "-o", "json")
		done <- result{code, out, errOut}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for sessions() != 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	conn, err := forwardtest.Dial(a.ForwardAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var p []byte
	for i := range 5 {
		p = append(p, forwardtest.Entry(time.Now(), map[string]any{"n": i})...)
	}
	for _, tag := range []string{"other", "app.web"} {
		if err := conn.SendAck(forwardtest.Packed(tag, p, forwardtest.Options{Chunk: tag}), tag, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("tap did not end at its limit")
	}
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	if r.code != 0 || len(lines) != 3 {
		t.Fatalf("tap: exit %d, %d lines %q, %s", r.code, len(lines), r.out, r.err)
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["tag"] != "app.web" {
			t.Errorf("tap line %q (%v)", l, err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); sessions() != 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if s := sessions(); s != 0 {
		t.Errorf("%v taps still open after the client went", s)
	}
	code, _, errOut := sluiceCmd("tap", "--api", base, "--stage", "nosuch", "--limit", "1")
	if code != 1 || !strings.Contains(errOut, "not ingest or a sink's name") {
		t.Errorf("tap on an unknown stage: %d %q", code, errOut)
	}
}
