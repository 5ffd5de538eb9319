package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Client calls the operator API of a running sluice: what the command line
// (`sluice status`, `sluice rewind`, `sluice dlq`) is built on.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// NewClient returns a client for the API at base (http://host:port or
// https://...), sending token as a bearer token when it is set, and trusting
// the CA certificates in caFile besides the system's when it is set.
func NewClient(base, token, caFile string) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("api URL %q: want http://host:port or https://host:port", base)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca: %s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &Client{base: strings.TrimRight(base, "/"), token: token, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// ClientError is an answer of the API other than 2xx.
type ClientError struct {
	Status  int
	Message string // the API's own error text
}

func (e *ClientError) Error() string {
	switch e.Status {
	case http.StatusUnauthorized:
		return "the API refused the token (401): give the API token with --token or SLUICE_API_TOKEN"
	case http.StatusNotFound:
		return e.Message
	}
	return fmt.Sprintf("the API answered %d: %s", e.Status, e.Message)
}

// clientError is the API's refusal, with the text of its {"error": ...}.
func clientError(status int, body []byte) *ClientError {
	var e struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	return &ClientError{Status: status, Message: msg}
}

// ErrUnreachable wraps a failure to reach the API at all.
var ErrUnreachable = errors.New("cannot reach the sluice API")

// send makes one request with the token, through hc (c.http when nil),
// and says plainly when the API cannot be reached.
func (c *Client) send(ctx context.Context, hc *http.Client, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if hc == nil {
		hc = c.http
	}
	res, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w at %s (is sluice running, and is --api right?): %v", ErrUnreachable, c.base, err)
	}
	return res, nil
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	res, err := c.send(ctx, nil, method, path, rd)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if res.StatusCode/100 != 2 {
		return clientError(res.StatusCode, raw)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("the API's answer to %s %s: %w", method, path, err)
	}
	return nil
}

// Tap streams live records at a stage (GET /v1/tap) to line, one JSON line
// each, until the tap's limit, ctx ends, or line returns an error.
func (c *Client) Tap(ctx context.Context, stage string, match []string, condition string, limit int, rate float64, line func([]byte) error) error {
	q := url.Values{"stage": {stage}, "match": match, "condition": {condition},
		"limit": {strconv.Itoa(limit)}, "rate": {strconv.FormatFloat(rate, 'f', -1, 64)}}
	// A tap lasts as long as the operator watches: no overall timeout.
	res, err := c.send(ctx, &http.Client{Transport: c.http.Transport}, http.MethodGet, "/v1/tap?"+q.Encode(), nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		return clientError(res.StatusCode, raw)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		if err := line(sc.Bytes()); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// Base is the API's base URL.
func (c *Client) Base() string { return c.base }

// Status is GET /v1/status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	return &st, c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
}

// Rewind makes a sink deliver again from seq, or, when seq is 0, from the
// first message stored at or after at; it returns the sequence it starts
// from.
func (c *Client) Rewind(ctx context.Context, sink string, seq uint64, at time.Time) (uint64, error) {
	body := map[string]any{}
	if seq != 0 {
		body["seq"] = seq
	} else {
		body["time"] = at
	}
	var out struct {
		Seq uint64 `json:"reset_seq"`
	}
	err := c.do(ctx, http.MethodPost, "/v1/sinks/"+url.PathEscape(sink)+"/rewind", body, &out)
	return out.Seq, err
}

// DeadLetters lists up to limit of a sink's dead letters from the
// dead-letter sequence from on.
func (c *Client) DeadLetters(ctx context.Context, sink string, from uint64, limit int) ([]DeadLetter, error) {
	var out struct {
		DeadLetters []DeadLetter `json:"dead_letters"`
	}
	q := url.Values{"from": {strconv.FormatUint(from, 10)}, "limit": {strconv.Itoa(limit)}}
	err := c.do(ctx, http.MethodGet, "/v1/sinks/"+url.PathEscape(sink)+"/dead-letters?"+q.Encode(), nil, &out)
	return out.DeadLetters, err
}

// DeadLetter returns one dead letter by its dead-letter sequence.
func (c *Client) DeadLetter(ctx context.Context, seq uint64) (*DeadLetter, error) {
	var dl DeadLetter
	return &dl, c.do(ctx, http.MethodGet, "/v1/dead-letters/"+strconv.FormatUint(seq, 10), nil, &dl)
}

// Replay writes up to limit of a sink's dead letters to it again and
// returns how many.
func (c *Client) Replay(ctx context.Context, sink string, limit int) (int, error) {
	var out struct {
		Replayed int `json:"replayed"`
	}
	err := c.do(ctx, http.MethodPost, "/v1/sinks/"+url.PathEscape(sink)+"/dead-letters/replay?limit="+strconv.Itoa(limit), nil, &out)
	return out.Replayed, err
}
