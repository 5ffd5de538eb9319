package api

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicelog/sluice/internal/component"
)

// AuthConfig lists the bearer tokens a listener accepts. With no token
// configured the listener is open. Tokens come from the list (where
// ${ENV} references are expanded) and from files, one token per line.
type AuthConfig struct {
	Tokens     []string `yaml:"tokens"`
	TokenFiles []string `yaml:"token_files"`
}

// Validate checks that every token file is readable and every token usable.
func (c AuthConfig) Validate() error {
	_, err := c.Load()
	return err
}

// Load returns every token.
func (c AuthConfig) Load() ([]string, error) {
	var out []string
	for i, t := range c.Tokens {
		if strings.TrimSpace(t) == "" {
			return nil, fmt.Errorf("tokens[%d]: must not be empty", i)
		}
		out = append(out, strings.TrimSpace(t))
	}
	for i, f := range c.TokenFiles {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("token_files[%d]: %w", i, err)
		}
		n := 0
		for _, line := range strings.Split(string(raw), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				out = append(out, line)
				n++
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("token_files[%d]: %s holds no token", i, f)
		}
	}
	return out, nil
}

// AuthFailures returns the shared counter of rejected credentials,
// sluice_auth_failures_total{listener, reason}.
func AuthFailures(r prometheus.Registerer) *prometheus.CounterVec { return component.AuthFailures(r) }

// BearerAuth lets a request through when it carries one of tokens as
// `Authorization: Bearer <token>`, compared in constant time; otherwise it
// answers 401 and counts the failure. With no tokens it lets everything
// through. Tokens never appear in logs or answers.
func BearerAuth(listener string, tokens []string, failures *prometheus.CounterVec) func(http.Handler) http.Handler {
	want := make([][]byte, len(tokens))
	for i, t := range tokens {
		want[i] = []byte(t)
	}
	return func(next http.Handler) http.Handler {
		if len(want) == 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := r.Header.Get("Authorization")
			got, ok := strings.CutPrefix(h, "Bearer ")
			if !ok || got == "" {
				failures.WithLabelValues(listener, "missing").Inc()
				w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "a bearer token is required"})
				return
			}
			match := 0
			for _, t := range want {
				match |= subtle.ConstantTimeCompare([]byte(got), t)
			}
			if match != 1 {
				failures.WithLabelValues(listener, "bad_token").Inc()
				w.Header().Set("WWW-Authenticate", `Bearer realm="sluice", error="invalid_token"`)
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "the bearer token is not valid"})
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
