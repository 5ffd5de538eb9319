package awsconf

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Signer is an http.RoundTripper that signs each request with SigV4 for
// Amazon OpenSearch Service (service "es") or OpenSearch Serverless
// ("aoss"). The body is hashed as sent (a gzip body compressed), and the
// hash goes in X-Amz-Content-Sha256, which OpenSearch Serverless requires.
type Signer struct {
	// Base sends the signed request; nil means http.DefaultTransport.
	Base        http.RoundTripper
	Credentials aws.CredentialsProvider
	Region      string
	Service     string
	// Now is the signing time; nil means time.Now.
	Now func() time.Time

	signer *v4.Signer
}

// ErrAuthorizationSet means a request to be signed already carries other
// credentials.
var ErrAuthorizationSet = errors.New("sigv4: request already has an Authorization header; basic auth, API keys and bearer tokens cannot be combined with SigV4")

// RoundTrip signs a copy of req and sends it.
func (s *Signer) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Authorization") != "" {
		closeBody(req)
		return nil, ErrAuthorizationSet
	}
	body, err := readBody(req)
	if err != nil {
		return nil, fmt.Errorf("sigv4: reading the body: %w", err)
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	creds, err := s.Credentials.Retrieve(req.Context())
	if err != nil {
		return nil, fmt.Errorf("sigv4: credentials: %w", err)
	}
	out := req.Clone(req.Context())
	if body != nil {
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		out.ContentLength = int64(len(body))
	}
	out.Header.Set("X-Amz-Content-Sha256", hash)
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	signer := s.signer
	if signer == nil {
		signer = v4.NewSigner()
	}
	if err := signer.SignHTTP(req.Context(), creds, out, hash, s.Service, s.Region, now().UTC()); err != nil {
		return nil, fmt.Errorf("sigv4: %w", err)
	}
	base := s.Base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(out)
}

// readBody returns the request's body without consuming req's own.
func readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	if req.GetBody != nil {
		rc, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		closeBody(req)
		return io.ReadAll(rc)
	}
	defer req.Body.Close()
	return io.ReadAll(req.Body)
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
