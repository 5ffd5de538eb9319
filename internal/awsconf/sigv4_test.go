package awsconf

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

const (
	exampleKeyID  = "AKIDEXAMPLE"
	exampleSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	exampleToken  = "example-session-token"
)

var signTime = time.Date(2026, 11, 22, 7, 34, 52, 0, time.UTC)

func exampleCreds() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(exampleKeyID, exampleSecret, exampleToken)
}

func fixedNow() time.Time { return signTime }

// sha256Hex is the payload hash of body, computed here independently of
// the signer.
func sha256Hex(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// authParts splits a SigV4 Authorization header into its credential,
// signed headers and signature.
func authParts(auth string) (credential string, signed []string, signature string, ok bool) {
	rest, ok := strings.CutPrefix(auth, "AWS4-HMAC-SHA256 ")
	if !ok {
		return "", nil, "", false
	}
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			credential = v
		case "SignedHeaders":
			signed = strings.Split(v, ";")
		case "Signature":
			signature = v
		}
	}
	return credential, signed, signature, credential != "" && len(signed) > 0 && signature != ""
}

// verification is what a verifier found about one request.
type verification struct {
	method, uri string
	header      http.Header
	body        []byte
	err         error // nil: the signature is valid
}

// verifier checks SigV4 signatures on the server side, as AWS does: it
// looks the secret up by the access key id, checks the body against
// X-Amz-Content-Sha256 when present, rebuilds the request from the method,
// the URL and the headers the request says it signed, signs that with the
// SDK's signer at the time of X-Amz-Date, and compares the signatures.
type verifier struct {
	secrets map[string]aws.Credentials // by access key id

	mu   sync.Mutex
	seen []verification
}

func newVerifier(creds ...aws.Credentials) *verifier {
	v := &verifier{secrets: map[string]aws.Credentials{}}
	for _, c := range creds {
		v.secrets[c.AccessKeyID] = c
	}
	return v
}

// check verifies r, whose body has been read into body.
func (v *verifier) check(r *http.Request, body []byte) error {
	credential, signed, signature, ok := authParts(r.Header.Get("Authorization"))
	if !ok {
		return fmt.Errorf("no SigV4 Authorization header: %q", r.Header.Get("Authorization"))
	}
	scope := strings.Split(credential, "/") // key id, day, region, service, aws4_request
	if len(scope) != 5 || scope[4] != "aws4_request" {
		return fmt.Errorf("credential %q", credential)
	}
	creds, ok := v.secrets[scope[0]]
	if !ok {
		return fmt.Errorf("unknown access key id %s", scope[0])
	}
	if r.Header.Get("X-Amz-Security-Token") != creds.SessionToken {
		return errors.New("wrong session token")
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil || at.Format("20060102") != scope[1] {
		return fmt.Errorf("X-Amz-Date %q for scope %s", r.Header.Get("X-Amz-Date"), credential)
	}
	hash := sha256Hex(body)
	if h := r.Header.Get("X-Amz-Content-Sha256"); h != "" && h != hash {
		return fmt.Errorf("X-Amz-Content-Sha256 %s, body hashes to %s", h, hash)
	}

	re, err := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	re.ContentLength = r.ContentLength
	for _, name := range signed {
		switch name {
		case "host", "content-length", "x-amz-date", "x-amz-security-token":
			// From r.Host, ContentLength, the time and the credentials.
		default:
			k := http.CanonicalHeaderKey(name)
			if _, ok := r.Header[k]; !ok {
				return fmt.Errorf("signed header %s is missing", name)
			}
			re.Header[k] = r.Header[k]
		}
	}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, re, hash, scope[3], scope[2], at); err != nil {
		return err
	}
	_, resigned, want, _ := authParts(re.Header.Get("Authorization"))
	if !slices.Equal(signed, resigned) {
		return fmt.Errorf("signed headers %v, re-signed %v", signed, resigned)
	}
	if signature != want {
		return fmt.Errorf("signature %s, want %s", signature, want)
	}
	return nil
}

// record verifies and remembers r.
func (v *verifier) record(r *http.Request) verification {
	body, err := io.ReadAll(r.Body)
	if err == nil {
		err = v.check(r, body)
	}
	got := verification{method: r.Method, uri: r.URL.RequestURI(), header: r.Header.Clone(), body: body, err: err}
	v.mu.Lock()
	v.seen = append(v.seen, got)
	v.mu.Unlock()
	return got
}

func (v *verifier) requests() []verification {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.seen)
}

// verifyingServer is an OpenSearch stand-in on 127.0.0.1 that answers 403
// to requests whose signature does not verify; it knows the example
// credentials, or the given ones.
func verifyingServer(t *testing.T, known ...aws.Credentials) (*httptest.Server, *verifier) {
	t.Helper()
	if len(known) == 0 {
		creds, _ := exampleCreds().Retrieve(context.Background())
		known = append(known, creds)
	}
	v := newVerifier(known...)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := v.record(r); got.err != nil {
			http.Error(w, got.err.Error(), http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"errors":false,"items":[]}`)
	}))
	t.Cleanup(srv.Close)
	return srv, v
}

func gzipped(t *testing.T, s string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	io.WriteString(zw, s)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// onlyReader hides everything but Read, so that http.NewRequest sets no
// GetBody and no ContentLength.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// closeTracker records that the transport closed the caller's body.
type closeTracker struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeTracker) Close() error { c.closed.Store(true); return nil }

// snapshot is what the caller can see of a request.
type snapshot struct {
	method, url, host string
	header            http.Header
	contentLength     int64
	body              io.ReadCloser
	hasGetBody        bool
}

func snap(req *http.Request) snapshot {
	return snapshot{req.Method, req.URL.String(), req.Host, req.Header.Clone(), req.ContentLength, req.Body, req.GetBody != nil}
}

func TestSignerMatchesTheSDKSigner(t *testing.T) {
	srv, v := verifyingServer(t)
	const region, service = "eu-west-1", "es"
	s := &Signer{Credentials: exampleCreds(), Region: region, Service: service, Now: fixedNow}
	bulk := []byte("{\"index\":{\"_index\":\"logs-2026.11.22\"}}\n{\"message\":\"hello wörld\",\"level\":\"info\"}\n")
	compressed := gzipped(t, string(bulk))

	for _, c := range []struct {
		name, method, path string
		header             map[string]string
		body               []byte
		getBody            bool // false: a body without GetBody nor ContentLength
	}{
		{"bulk", http.MethodPost, "/_bulk?filter_path=errors%2Citems.*.error&pipeline=p", map[string]string{"Content-Type": "application/x-ndjson"}, bulk, true},
		{"gzip", http.MethodPost, "/_bulk", map[string]string{"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}, compressed, true},
		{"empty GET", http.MethodGet, "/", nil, nil, true},
		{"no GetBody", http.MethodPut, "/_index_template/sluice", map[string]string{"Content-Type": "application/json"}, []byte(`{"index_patterns":["logs-*"]}`), false},
		{"escaped path", http.MethodPost, "/logs%2Ba%20b/_doc", map[string]string{"Content-Type": "application/json"}, []byte(`{}`), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var body io.Reader
			switch {
			case c.body == nil:
			case c.getBody:
				body = bytes.NewReader(c.body)
			default:
				body = onlyReader{bytes.NewReader(c.body)}
			}
			req, err := http.NewRequest(c.method, srv.URL+c.path, body)
			if err != nil {
				t.Fatal(err)
			}
			for k, val := range c.header {
				req.Header.Set(k, val)
			}
			if (req.GetBody != nil) != (c.getBody && c.body != nil) {
				t.Fatalf("GetBody set: %v", req.GetBody != nil)
			}
			before := snap(req)

			res, err := s.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()

			if after := snap(req); !reflect.DeepEqual(before, after) {
				t.Errorf("the caller's request changed:\n%+v\n%+v", before, after)
			}
			seen := v.requests()
			if len(seen) != 1 {
				t.Fatalf("%d requests reached the server", len(seen))
			}
			got := seen[0]
			if res.StatusCode != http.StatusOK || got.err != nil {
				t.Errorf("server-side verification: %d %v", res.StatusCode, got.err)
			}
			if !bytes.Equal(got.body, c.body) {
				t.Errorf("the server received a different body: %q", got.body)
			}
			// The signer puts the query in canonical form (sorted, escaped
			// the AWS way), which is what it signs.
			gotPath, gotQuery, _ := strings.Cut(got.uri, "?")
			wantPath, wantQuery, _ := strings.Cut(c.path, "?")
			gq, _ := url.ParseQuery(gotQuery)
			wq, _ := url.ParseQuery(wantQuery)
			if got.method != c.method || gotPath != wantPath || !reflect.DeepEqual(gq, wq) {
				t.Errorf("the server received %s %s", got.method, got.uri)
			}

			// The same request, signed independently with the SDK's signer.
			want, err := http.NewRequest(c.method, srv.URL+c.path, bytes.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, val := range c.header {
				want.Header.Set(k, val)
			}
			hash := sha256Hex(c.body)
			want.Header.Set("X-Amz-Content-Sha256", hash)
			creds, _ := exampleCreds().Retrieve(context.Background())
			if err := v4.NewSigner().SignHTTP(context.Background(), creds, want, hash, service, region, signTime); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"Authorization", "X-Amz-Date", "X-Amz-Security-Token", "X-Amz-Content-Sha256", "Content-Type", "Content-Encoding"} {
				if g, w := got.header.Get(k), want.Header.Get(k); g != w {
					t.Errorf("%s: got %q, want %q", k, g, w)
				}
			}
			if got.header.Get("X-Amz-Content-Sha256") != hash || got.header.Get("X-Amz-Security-Token") != exampleToken {
				t.Errorf("content hash %q, token %q", got.header.Get("X-Amz-Content-Sha256"), got.header.Get("X-Amz-Security-Token"))
			}
			credential, signed, _, ok := authParts(got.header.Get("Authorization"))
			if wantScope := exampleKeyID + "/" + signTime.Format("20060102") + "/" + region + "/" + service + "/aws4_request"; !ok || credential != wantScope {
				t.Errorf("credential %q, want %q", credential, wantScope)
			}
			for _, h := range []string{"host", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"} {
				if !slices.Contains(signed, h) {
					t.Errorf("%s is not among the signed headers %v", h, signed)
				}
			}
			if c.body != nil && !slices.Contains(signed, "content-length") {
				t.Errorf("content-length is not among the signed headers %v", signed)
			}
			v.mu.Lock()
			v.seen = nil
			v.mu.Unlock()
		})
	}
}

// tamper is middleware between the signer and the network that changes
// the body of signed requests, and possibly the hash to match.
type tamper struct {
	base       http.RoundTripper
	updateHash bool
}

func (tp tamper) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	body = bytes.ToUpper(body) // same length
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.GetBody = nil
	if tp.updateHash {
		req.Header.Set("X-Amz-Content-Sha256", sha256Hex(body))
	}
	return tp.base.RoundTrip(req)
}

// A body changed after signing is detected by the server, whether or not
// the hash header was changed too.
func TestTamperedBodyFailsVerification(t *testing.T) {
	srv, v := verifyingServer(t)
	for _, updateHash := range []bool{false, true} {
		v.mu.Lock()
		v.seen = nil
		v.mu.Unlock()
		s := &Signer{Base: tamper{http.DefaultTransport, updateHash}, Credentials: exampleCreds(), Region: "us-east-1", Service: "aoss", Now: fixedNow}
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/_bulk", strings.NewReader("{\"index\":{}}\n{\"a\":1}\n"))
		res, err := s.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		seen := v.requests()
		if res.StatusCode != http.StatusForbidden || len(seen) != 1 || seen[0].err == nil {
			t.Fatalf("updateHash=%v: a tampered request verified (%d)", updateHash, res.StatusCode)
		}
		wantErr := "X-Amz-Content-Sha256"
		if updateHash {
			wantErr = "signature"
		}
		if !strings.Contains(seen[0].err.Error(), wantErr) {
			t.Errorf("updateHash=%v: %v", updateHash, seen[0].err)
		}
	}

	// The untampered request verifies with the same server.
	v.mu.Lock()
	v.seen = nil
	v.mu.Unlock()
	s := &Signer{Credentials: exampleCreds(), Region: "us-east-1", Service: "aoss", Now: fixedNow}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/_bulk", strings.NewReader("{\"index\":{}}\n{\"a\":1}\n"))
	res, err := s.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("untampered: %d %v", res.StatusCode, v.requests()[0].err)
	}
}

func TestSignerWithoutSessionTokenAndWithStaleHeaders(t *testing.T) {
	plain := aws.Credentials{AccessKeyID: "AKIDPLAIN", SecretAccessKey: "plain-secret"}
	srv, v := verifyingServer(t, plain)
	s := &Signer{Credentials: credentials.StaticCredentialsProvider{Value: plain}, Region: "eu-north-1", Service: "es"}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/_cluster/health", nil)
	req.Header.Set("X-Amz-Security-Token", "stale")
	req.Header.Set("X-Amz-Date", "20200101T000000Z")
	res, err := (&http.Client{Transport: s}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	got := v.requests()[0]
	if res.StatusCode != http.StatusOK || got.err != nil {
		t.Errorf("%d %v", res.StatusCode, got.err)
	}
	if _, ok := got.header["X-Amz-Security-Token"]; ok {
		t.Error("a session token was sent for credentials without one")
	}
	if d, err := time.Parse("20060102T150405Z", got.header.Get("X-Amz-Date")); err != nil || time.Since(d).Abs() > time.Minute {
		t.Errorf("X-Amz-Date %q is not now", got.header.Get("X-Amz-Date"))
	}
	if got.header.Get("X-Amz-Content-Sha256") != sha256Hex(nil) {
		t.Errorf("empty body hash %q", got.header.Get("X-Amz-Content-Sha256"))
	}
}

func TestSignerRefusesAndSendsNothing(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	errNoCreds := errors.New("no credentials anywhere")
	failing := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return aws.Credentials{}, errNoCreds })

	for _, c := range []struct {
		name    string
		creds   aws.CredentialsProvider
		prepare func(*http.Request)
		check   func(error) bool
	}{
		{"basic auth", exampleCreds(), func(r *http.Request) { r.SetBasicAuth("elastic", "changeme") },
			func(err error) bool { return errors.Is(err, ErrAuthorizationSet) }},
		{"API key", exampleCreds(), func(r *http.Request) { r.Header.Set("Authorization", "ApiKey abc") },
			func(err error) bool { return errors.Is(err, ErrAuthorizationSet) }},
		{"credential error", failing, func(*http.Request) {},
			func(err error) bool { return errors.Is(err, errNoCreds) && strings.HasPrefix(err.Error(), "sigv4: ") }},
		{"no provider", nil, func(*http.Request) {},
			func(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "sigv4: ") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := &closeTracker{Reader: strings.NewReader("{}")}
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/_bulk", body)
			c.prepare(req)
			s := &Signer{Credentials: c.creds, Region: "us-east-1", Service: "es", Now: fixedNow}
			res, err := s.RoundTrip(req)
			if res != nil || !c.check(err) {
				t.Errorf("RoundTrip: %v, %v", res, err)
			}
			if err != nil && (strings.Contains(err.Error(), exampleSecret) || strings.Contains(err.Error(), "changeme")) {
				t.Errorf("the error shows a secret: %v", err)
			}
			if !body.closed.Load() {
				t.Error("the request body was not closed")
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("%d requests were sent", n)
	}
	if want := "sigv4: request already has an Authorization header; basic auth, API keys and bearer tokens cannot be combined with SigV4"; ErrAuthorizationSet.Error() != want {
		t.Errorf("message %q", ErrAuthorizationSet)
	}
}

// Through an http.Client, with connections reused by concurrent requests:
// every request verifies.
func TestSignerConcurrent(t *testing.T) {
	srv, v := verifyingServer(t)
	client := &http.Client{Transport: &Signer{Credentials: aws.NewCredentialsCache(exampleCreds()), Region: "eu-west-1", Service: "es"}}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 5 {
				body := strings.Repeat(fmt.Sprintf("{\"index\":{}}\n{\"n\":%d}\n", i*100+j), i+1)
				res, err := client.Post(srv.URL+"/_bulk", "application/x-ndjson", strings.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		})
	}
	wg.Wait()
	seen := v.requests()
	if len(seen) != 80 {
		t.Fatalf("%d requests", len(seen))
	}
	for _, got := range seen {
		if got.err != nil {
			t.Fatal(got.err)
		}
	}
}

// discard answers every request without reading its body.
type discard struct{}

func (discard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: req}, nil
}

// A 5 MiB body with GetBody is hashed by streaming: signing allocates a
// small fraction of the body.
func TestSignerDoesNotCopyTheBody(t *testing.T) {
	body := bytes.Repeat([]byte("{\"index\":{}}\n{\"message\":\"0123456789\"}\n"), 5<<20/40)
	s := &Signer{Base: discard{}, Credentials: aws.NewCredentialsCache(exampleCreds()), Region: "eu-west-1", Service: "es", Now: fixedNow}
	send := func() {
		req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:1/_bulk", bytes.NewReader(body))
		res, err := s.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	send()
	const runs = 10
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		send()
	}
	runtime.ReadMemStats(&after)
	if perRun := (after.TotalAlloc - before.TotalAlloc) / runs; perRun > 256<<10 {
		t.Errorf("signing a %d-byte body allocated %d bytes", len(body), perRun)
	}
}

func BenchmarkSigner5MiB(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 5<<20)
	s := &Signer{Base: discard{}, Credentials: aws.NewCredentialsCache(exampleCreds()), Region: "eu-west-1", Service: "es"}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:1/_bulk", bytes.NewReader(body))
		res, err := s.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		res.Body.Close()
	}
}
