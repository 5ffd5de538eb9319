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
// Amazon OpenSearch Service or Amazon Elasticsearch Service (Service "es")
// or OpenSearch Serverless ("aoss"), then sends it with Base.
//
// The body is hashed as it is sent: a body already compressed, with
// Content-Encoding: gzip, is signed compressed. The hash goes in
// X-Amz-Content-Sha256, which OpenSearch Serverless requires, and is part of
// the signature, so a body changed after signing is refused by AWS.
//
// The caller's request is not modified: a clone is signed and sent. When the
// request has GetBody (as requests from http.NewRequest with a bytes or
// strings reader do), the hash is streamed from one copy of the body and
// another copy is sent, and the body is never held in memory a second time;
// otherwise the body is read into memory once and the clone sends that.
//
// A request that already has an Authorization header is refused with
// [ErrAuthorizationSet] rather than overwritten.
//
// A Signer is safe for concurrent use; its fields must not change while it
// is in use.
type Signer struct {
	// Base sends the signed request; nil means http.DefaultTransport.
	Base http.RoundTripper
	// Credentials are retrieved for each request, with the request's
	// context; wrap them in an aws.CredentialsCache (as Config.Load does).
	Credentials aws.CredentialsProvider
	// Region is the signing region, such as eu-west-1.
	Region string
	// Service is the signing name: "es" or "aoss".
	Service string
	// Now is the signing time; nil means time.Now.
	Now func() time.Time
}

// ErrAuthorizationSet is returned for a request that already carries an
// Authorization header, that is other credentials.
var ErrAuthorizationSet = errors.New("sigv4: request already has an Authorization header; basic auth, API keys and bearer tokens cannot be combined with SigV4")

// signer is shared by all Signers: it holds no per-request state, and its
// cache of derived signing keys (per credentials, day, region and service)
// then serves every request.
var signer = v4.NewSigner()

// emptyHash is the hex SHA-256 of an empty body.
const emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// maxPrealloc bounds what is allocated up front from a request's
// ContentLength when its body must be read into memory.
const maxPrealloc = 64 << 20

// RoundTrip signs a clone of req and sends it with Base. As an
// http.RoundTripper, it closes req.Body, also on errors.
func (s *Signer) RoundTrip(req *http.Request) (*http.Response, error) {
	if len(req.Header.Values("Authorization")) > 0 {
		closeBody(req.Body)
		return nil, ErrAuthorizationSet
	}
	if s.Credentials == nil {
		closeBody(req.Body)
		return nil, errors.New("sigv4: no credentials provider")
	}
	ctx := req.Context()
	creds, err := s.Credentials.Retrieve(ctx)
	if err != nil {
		closeBody(req.Body)
		return nil, fmt.Errorf("sigv4: retrieving credentials: %w", err)
	}

	out := req.Clone(ctx)
	hash, err := prepareBody(req, out)
	if err != nil {
		return nil, fmt.Errorf("sigv4: reading the body: %w", err)
	}
	if out.Header == nil {
		out.Header = make(http.Header)
	}
	// Whatever the caller set is replaced by what signing sets.
	out.Header.Del("X-Amz-Date")
	out.Header.Del("X-Amz-Security-Token")
	out.Header.Set("X-Amz-Content-Sha256", hash)

	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	if err := signer.SignHTTP(ctx, creds, out, hash, s.Service, s.Region, now().UTC()); err != nil {
		closeBody(out.Body)
		return nil, fmt.Errorf("sigv4: signing: %w", err)
	}
	base := s.Base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(out)
}

// prepareBody returns the hex SHA-256 of req's body and gives out a body
// of its own that is byte-identical to what was hashed. It closes req.Body
// (out no longer uses it), also on errors.
func prepareBody(req, out *http.Request) (string, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return emptyHash, nil
	}
	if req.GetBody != nil {
		// Hash one copy and send another, so that what is sent is what
		// was hashed even if req.Body was partly read.
		hash, n, err := hashCopy(req.GetBody)
		closeBody(req.Body)
		if err != nil {
			return "", err
		}
		if req.ContentLength > 0 && n != req.ContentLength {
			return "", fmt.Errorf("GetBody returned %d bytes for a ContentLength of %d", n, req.ContentLength)
		}
		if out.Body, err = req.GetBody(); err != nil {
			return "", err
		}
		if n == 0 {
			closeBody(out.Body)
			out.Body, out.ContentLength = http.NoBody, 0
		}
		return hash, nil
	}

	var buf bytes.Buffer
	if req.ContentLength > 0 && req.ContentLength <= maxPrealloc {
		// With room for the read that sees EOF, so that it does not
		// grow the buffer.
		buf.Grow(int(req.ContentLength) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(req.Body)
	closeBody(req.Body)
	if err != nil {
		return "", err
	}
	body := buf.Bytes()
	if req.ContentLength > 0 && int64(len(body)) != req.ContentLength {
		return "", fmt.Errorf("read %d bytes for a ContentLength of %d", len(body), req.ContentLength)
	}
	if len(body) == 0 {
		out.Body, out.GetBody, out.ContentLength = http.NoBody, nil, 0
		return emptyHash, nil
	}
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	out.ContentLength = int64(len(body))
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:]), nil
}

// hashCopy streams a copy of the body through SHA-256.
func hashCopy(getBody func() (io.ReadCloser, error)) (string, int64, error) {
	rc, err := getBody()
	if err != nil {
		return "", 0, err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc) // without a buffer when rc is a bytes.Reader or Buffer
	if err != nil {
		return "", n, err
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])), n, nil
}

func closeBody(b io.ReadCloser) {
	if b != nil {
		b.Close()
	}
}
