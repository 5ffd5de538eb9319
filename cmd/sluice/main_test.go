package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// -probe exits 0 on 2xx and 1 on anything else, saying why.
func TestProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"not ready","listeners":"starting"}`))
			return
		}
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	}))
	defer srv.Close()
	var out strings.Builder
	if code := probeURL(srv.URL+"/healthz", &out); code != 0 || out.Len() != 0 {
		t.Errorf("healthy: %d %q", code, out.String())
	}
	if code := probeURL(srv.URL+"/readyz", &out); code != 1 || !strings.Contains(out.String(), "503") || !strings.Contains(out.String(), "not ready") {
		t.Errorf("not ready: %d %q", code, out.String())
	}
	out.Reset()
	srv.Close()
	if code := probeURL(srv.URL+"/healthz", &out); code != 1 || !strings.Contains(out.String(), "probe:") {
		t.Errorf("down: %d %q", code, out.String())
	}
}
