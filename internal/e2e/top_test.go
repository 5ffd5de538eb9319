package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicelog/sluice/internal/forwardtest"
)

// sluice top in a real terminal (tmux): it shows the listener's and the
// sink's records per second moving under load, and quits on q.
func TestTopInATerminal(t *testing.T) {
	skipShort(t, "starts sluice processes")
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed (.ci/run installs it)")
	}
	srv := repStartNATS(t)
	p := repStartReplica(t, "top", srv.ClientURL(), t.TempDir())
	session := fmt.Sprintf("sluice-top-%d", os.Getpid())
	tmux := func(args ...string) (string, error) {
		out, err := exec.Command("tmux", args...).CombinedOutput()
		return string(out), err
	}
	if out, err := tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "40",
		"env", "TERM=xterm-256color", sluiceBin, "top", "--api", "http://"+p.api); err != nil {
		t.Fatalf("tmux: %v %s", err, out)
	}
	t.Cleanup(func() { tmux("kill-session", "-t", session) })

	stop := make(chan struct{})
	sent := make(chan error, 1)
	go func() {
		conn, err := forwardtest.Dial(p.forward)
		if err != nil {
			sent <- err
			return
		}
		defer conn.Close()
		for i := 0; ; i++ {
			select {
			case <-stop:
				sent <- nil
				return
			default:
			}
			var b []byte
			for k := range 100 {
				b = append(b, forwardtest.Entry(time.Now(), map[string]any{"seq": i*100 + k, "log": "top"})...)
			}
			id := fmt.Sprint("t", i)
			if err := conn.SendAck(forwardtest.Packed("app", b, forwardtest.Options{Chunk: id}), id, 10*time.Second); err != nil {
				sent <- err
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	// A row's numbers: the first field names it.
	row := func(screen, name string) []string {
		for _, l := range strings.Split(screen, "\n") {
			if f := strings.Fields(l); len(f) > 2 && f[0] == name {
				return f
			}
		}
		return nil
	}
	var screen string
	moving := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		screen, _ = tmux("capture-pane", "-p", "-t", session)
		fwd, sink := row(screen, "forward"), row(screen, "file")
		if fwd == nil || sink == nil {
			continue
		}
		in, _ := strconv.ParseFloat(fwd[2], 64)
		out, _ := strconv.ParseFloat(sink[1], 64)
		if in > 0 && out > 0 && fwd[1] == "1" {
			moving = true
			t.Logf("forward: 1 connection, %.0f records/s in; file sink %.0f records/s out", in, out)
			break
		}
	}
	close(stop)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if !moving {
		t.Fatalf("the figures did not move under load; last screen:\n%s", screen)
	}
	if !strings.Contains(screen, "REPLICA") || !strings.Contains(screen, "stream LOGS") {
		t.Errorf("no stream or replica section:\n%s", screen)
	}
	if out, err := tmux("send-keys", "-t", session, "q"); err != nil {
		t.Fatalf("send q: %v %s", err, out)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := tmux("has-session", "-t", session); err != nil {
			break // the program quit, and its session with it
		}
		if time.Now().After(deadline) {
			screen, _ = tmux("capture-pane", "-p", "-t", session)
			t.Fatalf("sluice top still running 10 s after q:\n%s", screen)
		}
	}
}
