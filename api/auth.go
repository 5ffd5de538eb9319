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

// Reasons a bearer token is refused: label values of
// sluice_auth_failures_total.
const (
	AuthMissing  = "missing"
	AuthBadToken = "bad_token"
)

// Tokens are the bearer tokens a listener accepts; none means open.
type Tokens [][]byte

// NewTokens holds tokens for Check.
func NewTokens(tokens []string) Tokens {
	ts := make(Tokens, len(tokens))
	for i, t := range tokens {
		ts[i] = []byte(t)
	}
	return ts
}

// Check reads an Authorization value, "Bearer <token>", and returns "" when
// it carries one of the tokens (compared in constant time), else why not:
// AuthMissing or AuthBadToken. HTTP takes it from the header, gRPC from the
// authorization metadata.
func (ts Tokens) Check(authorization string) string {
	got, ok := strings.CutPrefix(authorization, "Bearer ")
	if !ok || got == "" {
		return AuthMissing
	}
	match := 0
	for _, t := range ts {
		match |= subtle.ConstantTimeCompare([]byte(got), t)
	}
	if match != 1 {
		return AuthBadToken
	}
	return ""
}

// BearerAuth lets a request through when it carries one of tokens as
// `Authorization: Bearer <token>`; otherwise it answers 401 and counts the
// failure. With no tokens it lets everything through. Tokens never appear
// in logs or answers.
func BearerAuth(listener string, tokens Tokens, failures *prometheus.CounterVec) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if len(tokens) == 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch reason := tokens.Check(r.Header.Get("Authorization")); reason {
			case AuthMissing:
				failures.WithLabelValues(listener, reason).Inc()
				w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "a bearer token is required"})
				return
			case AuthBadToken:
				failures.WithLabelValues(listener, reason).Inc()
				w.Header().Set("WWW-Authenticate", `Bearer realm="sluice", error="invalid_token"`)
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "the bearer token is not valid"})
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
