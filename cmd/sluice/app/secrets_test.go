package app

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicelog/sluice/api"
	"github.com/sluicelog/sluice/ingest/forward"
	"github.com/sluicelog/sluice/internal/forwardtest"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSecretsStayOutOfLogsAndStatus configures every secret, makes every
// kind of credential fail and succeed with debug logging on, and looks for
// the secrets in the logs and the status.
func TestSecretsStayOutOfLogsAndStatus(t *testing.T) {
	const (
		sharedKey = "shared-SECRET-1"
		password  = "password-SECRET-2"
		apiToken  = "api-SECRET-3"
		ingestTok = "ingest-SECRET-4"
		wrongTok  = "wrong-SECRET-5"
	)
	cfg := testConfig(t, t.TempDir(), t.TempDir())
	cfg.Forward.Security.SharedKey = sharedKey
	cfg.Forward.Security.SelfHostname = "sluice-test"
	cfg.Forward.Security.Users = []forward.UserConfig{{Username: "fb", Password: password}}
	cfg.API.Auth = api.AuthConfig{Tokens: []string{apiToken}}
	cfg.HTTP.Auth = api.AuthConfig{Tokens: []string{ingestTok}}
	validate(t, cfg)
	a, logs := startAppLogging(t, cfg, slog.LevelDebug)
	defer shutdown(t, a)

	for _, pw := range []string{"wrong", password} {
		c := dialForward(t, a)
		ok, _, err := c.Handshake(forwardtest.Auth{Hostname: "client", SharedKey: sharedKey, Username: "fb", Password: pw}, 5*time.Second)
		c.Close()
		if err != nil || ok != (pw == password) {
			t.Fatalf("handshake with password %q: %v %v", pw, ok, err)
		}
	}
	for _, tok := range []string{wrongTok, ingestTok} {
		post(t, httpClient, "http://"+a.HTTPAddr().String()+"/app", tok, "application/json", []byte(`{"a":1}`), nil)
	}
	_, status := apiCall(t, "GET", "http://"+a.APIAddr().String()+"/v1/status", apiToken, "")
	apiCall(t, "GET", "http://"+a.APIAddr().String()+"/v1/status", wrongTok, "")
	for _, secret := range []string{sharedKey, password, apiToken, ingestTok, wrongTok} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the logs show %q", secret)
		}
		if strings.Contains(string(status), secret) {
			t.Errorf("the status shows %q", secret)
		}
	}
	if !strings.Contains(logs.String(), "bad_user") && !strings.Contains(logs.String(), "username/password") {
		t.Errorf("the failed handshake was not logged with its reason:\n%s", logs.String())
	}
}
