// Package awsfake holds what the in-process fakes of AWS services share: the
// AWS JSON 1.1 protocol. A request is a POST of application/x-amz-json-1.1
// with the operation in X-Amz-Target ("Logs_20140328.PutLogEvents"); a
// success is 200 with a JSON body; an error is a 4xx or 5xx with
// X-Amzn-ErrorType and a body {"__type": ..., "message": ...}. Requests
// must be SigV4-signed (an Authorization header with AWS4-HMAC-SHA256 and
// X-Amz-Date), as the services refuse anything else.
package awsfake

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Error is a service error.
type Error struct {
	Status  int
	Type    string // e.g. ResourceNotFoundException
	Message string
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// Errorf is an Error with status 400, the status of most AWS errors.
func Errorf(typ, msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Type: typ, Message: msg}
}

// Handler serves one operation: it decodes body into its input and returns
// the output, or an error.
type Handler func(body []byte) (any, *Error)

// Server is an AWS JSON 1.1 service on 127.0.0.1.
type Server struct {
	prefix string // the target prefix, "Logs_20140328"
	ops    map[string]Handler
	srv    *http.Server
	ln     net.Listener

	mu    sync.Mutex
	calls map[string]int
	fail  map[string][]*Error // queued failures per operation
}

// New starts a service whose operations are named prefix.<name>.
func New(prefix string, ops map[string]Handler) *Server {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic("awsfake: " + err.Error())
	}
	s := &Server{prefix: prefix, ops: ops, ln: ln, calls: map[string]int{}, fail: map[string][]*Error{}}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s
}

// URL is the endpoint to give the SDK client.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Close stops the server.
func (s *Server) Close() { _ = s.srv.Close() }

// Calls returns how often an operation was called (failures included).
func (s *Server) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// Fail makes the next calls of op fail with these errors, in order.
func (s *Server) Fail(op string, errs ...*Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[op] = append(s.fail[op], errs...)
}

// ServeHTTP decodes the protocol and dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, s.prefix+".")
	switch {
	case r.Method != http.MethodPost:
		writeError(w, &Error{Status: 405, Type: "UnknownOperationException", Message: "only POST"})
		return
	case r.Header.Get("Content-Type") != "application/x-amz-json-1.1":
		writeError(w, Errorf("SerializationException", "Content-Type must be application/x-amz-json-1.1"))
		return
	case !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=") || r.Header.Get("X-Amz-Date") == "":
		writeError(w, Errorf("MissingAuthenticationTokenException", "Missing Authentication Token"))
		return
	case !ok || s.ops[op] == nil:
		writeError(w, Errorf("UnknownOperationException", "unknown operation "+target))
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.calls[op]++
	var queued *Error
	if q := s.fail[op]; len(q) > 0 {
		queued, s.fail[op] = q[0], q[1:]
	}
	s.mu.Unlock()
	if queued != nil {
		writeError(w, queued)
		return
	}
	out, e := s.ops[op](body)
	if e != nil {
		writeError(w, e)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-RequestId", "00000000-0000-4000-8000-000000000000")
	enc, _ := json.Marshal(out)
	w.Write(enc)
}

func writeError(w http.ResponseWriter, e *Error) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", e.Type)
	w.Header().Set("X-Amzn-RequestId", "00000000-0000-4000-8000-000000000001")
	w.WriteHeader(e.Status)
	enc, _ := json.Marshal(map[string]string{"__type": e.Type, "message": e.Message})
	w.Write(enc)
}

// Decode unmarshals an input, or gives the service's SerializationException.
func Decode(body []byte, v any) *Error {
	if err := json.Unmarshal(body, v); err != nil {
		return Errorf("SerializationException", err.Error())
	}
	return nil
}
