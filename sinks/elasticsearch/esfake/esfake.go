// Package esfake is an in-process Elasticsearch 8 for tests: the part of
// its HTTP API a log shipper uses, with Elasticsearch's own behaviour and
// error bodies. It answers with the X-Elastic-Product header (or, as
// OpenSearch, without it), parses NDJSON _bulk bodies (gzip too), keeps
// documents by index and _id, answers 409 to create on an existing _id,
// maps fields dynamically and refuses documents that conflict with the
// mapping (an object where a value was, a string where a number was) with
// document_parsing_exception, knows data streams from index templates,
// validates index names, and can be told to fail requests or single items,
// to answer slowly, to require credentials and to refuse large bodies.
package esfake

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
)

// Options shape the server.
type Options struct {
	// OpenSearch answers like OpenSearch 2.17: without X-Elastic-Product.
	OpenSearch bool
	// MaxContentLength refuses larger request bodies with 413, as
	// http.max_content_length does; 0 means 100MiB.
	MaxContentLength int
	// Credentials: when any is set, a request must carry one of them.
	Username, Password string
	APIKey             string // "Authorization: ApiKey <APIKey>" (scheme in any case)
	BearerToken        string
	// RequireHeaders must be present with these values (else 400).
	RequireHeaders map[string]string
	// NoAutoCreate refuses writes to missing indices with 404, as
	// action.auto_create_index: false does.
	NoAutoCreate bool
}

// Item is one bulk item as the fault hook sees it.
type Item struct {
	Op, Index, ID string
	Source        map[string]any
	// Seq is the item's position in its request, from 0.
	Seq int
}

// Stats count what the server saw.
type Stats struct {
	Requests, BulkRequests, Items int
	// ItemStatus counts the bulk items answered with each status.
	ItemStatus           map[int]int
	WireBytes, BodyBytes int64
}

// BulkRequest describes one _bulk request received.
type BulkRequest struct {
	Path      string
	Header    http.Header
	WireBytes int // as received
	BodyBytes int // after gzip decoding
	Items     int
	Gzip      bool
}

// Request is any request received.
type Request struct {
	Method, Path string
}

type doc struct {
	source  map[string]any
	version int
}

type index struct {
	docs       map[string]*doc
	order      []string
	mapping    map[string]string // field path -> object, long, double, text, boolean
	dataStream bool
	seqNo      int
}

// Server is the fake cluster.
type Server struct {
	opts Options
	srv  *http.Server
	ln   net.Listener

	mu        sync.Mutex
	indices   map[string]*index
	templates map[string]json.RawMessage
	stats     Stats
	bulks     []BulkRequest
	requests  []Request
	failN     int
	failCode  int
	failAfter string
	itemFault func(Item) (int, string, string)
	delay     time.Duration
}

// New starts a server on 127.0.0.1 at a port chosen by the kernel.
func New(opts Options) *Server {
	if opts.MaxContentLength <= 0 {
		opts.MaxContentLength = 100 << 20
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("esfake: %v", err))
	}
	s := &Server{opts: opts, ln: ln, indices: map[string]*index{}, templates: map[string]json.RawMessage{},
		stats: Stats{ItemStatus: map[int]int{}}}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s
}

// URL is the server's base URL.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Close stops the server.
func (s *Server) Close() { _ = s.srv.Close() }

// FailRequests answers the next n _bulk requests with status, and a
// Retry-After header when retryAfter is set.
func (s *Server) FailRequests(n, status int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failCode, s.failAfter = n, status, retryAfter
}

// SetItemFault calls f for every bulk item before it is applied; a status
// other than 0 fails the item with that status and error. nil clears it.
func (s *Server) SetItemFault(f func(Item) (status int, errType, reason string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.itemFault = f
}

// SetDelay makes every _bulk response wait d (or until the client gives up).
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// CreateIndex creates an empty index (for NoAutoCreate).
func (s *Server) CreateIndex(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index(name, true)
}

// Doc returns a document's source.
func (s *Server) Doc(idx, id string) (map[string]any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ix := s.indices[idx]; ix != nil {
		if d := ix.docs[id]; d != nil {
			return d.source, true
		}
	}
	return nil, false
}

// Docs returns the sources of an index in the order they were first
// written.
func (s *Server) Docs(idx string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	ix := s.indices[idx]
	if ix == nil {
		return nil
	}
	out := make([]map[string]any, 0, len(ix.order))
	for _, id := range ix.order {
		if d := ix.docs[id]; d != nil {
			out = append(out, d.source)
		}
	}
	return out
}

// IDs returns the ids of an index in the order they were first written.
func (s *Server) IDs(idx string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ix := s.indices[idx]; ix != nil {
		return append([]string(nil), ix.order...)
	}
	return nil
}

// Count is the number of documents in an index.
func (s *Server) Count(idx string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ix := s.indices[idx]; ix != nil {
		return len(ix.docs)
	}
	return 0
}

// Indices lists the indices and data streams, sorted.
func (s *Server) Indices() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.indices))
	for name := range s.indices {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// Template returns an index template's body.
func (s *Server) Template(name string) (json.RawMessage, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.templates[name]
	return t, ok
}

// Stats returns what the server has seen so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.ItemStatus = map[int]int{}
	for k, v := range s.stats.ItemStatus {
		st.ItemStatus[k] = v
	}
	return st
}

// BulkRequests returns every _bulk request received.
func (s *Server) BulkRequests() []BulkRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]BulkRequest(nil), s.bulks...)
}

// Requests returns every request received.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// ServeHTTP routes like Elasticsearch.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.opts.OpenSearch {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
	}
	w.Header().Set("Content-Type", "application/json")
	s.mu.Lock()
	s.stats.Requests++
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path})
	s.mu.Unlock()
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="security" charset="UTF-8"`)
		writeError(w, http.StatusUnauthorized, "security_exception",
			"missing authentication credentials for REST request ["+r.URL.Path+"]")
		return
	}
	for k, v := range s.opts.RequireHeaders {
		if r.Header.Get(k) != v {
			writeError(w, http.StatusBadRequest, "illegal_argument_exception", "header ["+k+"] must be ["+v+"]")
			return
		}
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		s.info(w)
	case len(parts) >= 1 && parts[len(parts)-1] == "_bulk" && len(parts) <= 2 && (r.Method == http.MethodPost || r.Method == http.MethodPut):
		def := ""
		if len(parts) == 2 {
			def = parts[0]
		}
		s.bulk(w, r, def)
	case len(parts) == 2 && parts[0] == "_index_template":
		s.template(w, r, parts[1])
	case len(parts) == 2 && parts[1] == "_count" && r.Method != http.MethodDelete:
		s.count(w, r, parts[0])
	case len(parts) == 2 && parts[1] == "_refresh":
		w.Write([]byte(`{"_shards":{"total":2,"successful":1,"failed":0}}`))
	case len(parts) == 3 && parts[1] == "_doc" && r.Method == http.MethodGet:
		s.get(w, parts[0], parts[2])
	default:
		writeError(w, http.StatusBadRequest, "illegal_argument_exception",
			fmt.Sprintf("no handler found for uri [%s] and method [%s]", r.URL.RequestURI(), r.Method))
	}
}

func (s *Server) authorized(r *http.Request) bool {
	o := s.opts
	if o.Username == "" && o.APIKey == "" && o.BearerToken == "" {
		return true
	}
	auth := r.Header.Get("Authorization")
	eq := func(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
	if o.Username != "" {
		if u, p, ok := r.BasicAuth(); ok && eq(u, o.Username) && eq(p, o.Password) {
			return true
		}
	}
	// Schemes are case-insensitive: the Go client sends "APIKey".
	scheme, cred, _ := strings.Cut(auth, " ")
	if o.APIKey != "" && strings.EqualFold(scheme, "ApiKey") && eq(cred, o.APIKey) {
		return true
	}
	return o.BearerToken != "" && strings.EqualFold(scheme, "Bearer") && eq(cred, o.BearerToken)
}

func (s *Server) info(w http.ResponseWriter) {
	v := map[string]any{"number": "8.15.0", "build_flavor": "default", "build_type": "docker",
		"lucene_version": "9.11.1", "minimum_wire_compatibility_version": "7.17.0",
		"minimum_index_compatibility_version": "7.0.0"}
	if s.opts.OpenSearch {
		v = map[string]any{"distribution": "opensearch", "number": "2.17.0", "lucene_version": "9.11.1",
			"minimum_wire_compatibility_version": "7.10.0", "minimum_index_compatibility_version": "7.0.0"}
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": "esfake", "cluster_name": "esfake",
		"cluster_uuid": "esfake-cluster", "version": v, "tagline": "You Know, for Search"})
}

func (s *Server) template(w http.ResponseWriter, r *http.Request, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	body, exists := s.templates[name]
	switch r.Method {
	case http.MethodHead:
		if !exists {
			w.WriteHeader(http.StatusNotFound)
		}
	case http.MethodGet:
		if !exists {
			writeError(w, http.StatusNotFound, "resource_not_found_exception", "index template matching ["+name+"] not found")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"index_templates": []any{map[string]any{"name": name, "index_template": body}}})
	case http.MethodPut, http.MethodPost:
		raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		var t struct {
			IndexPatterns []string `json:"index_patterns"`
		}
		if err := json.Unmarshal(raw, &t); err != nil {
			writeError(w, http.StatusBadRequest, "x_content_parse_exception", "[1:1] "+err.Error())
			return
		}
		if len(t.IndexPatterns) == 0 {
			writeError(w, http.StatusBadRequest, "action_request_validation_exception", "Validation Failed: 1: index patterns are missing;")
			return
		}
		s.templates[name] = raw
		writeJSON(w, http.StatusOK, map[string]any{"acknowledged": true})
	default:
		writeError(w, http.StatusMethodNotAllowed, "illegal_argument_exception", "method not allowed")
	}
}

// count serves _count over a comma-separated list of indices, wildcard
// patterns or _all (a missing concrete index is a 404, a pattern that
// matches nothing counts 0), optionally with a query string q. Of the
// Lucene syntax only field:value is supported (a term on a top-level or
// dotted field, compared as text); anything else is refused.
func (s *Server) count(w http.ResponseWriter, r *http.Request, names string) {
	field, value, filter := "", "", false
	if q := r.URL.Query().Get("q"); q != "" {
		var ok bool
		field, value, ok = strings.Cut(q, ":")
		if !ok || field == "" || strings.ContainsAny(q, ` ()*?\"`) {
			writeError(w, http.StatusBadRequest, "illegal_argument_exception",
				fmt.Sprintf("esfake supports only q=field:value, not [%s]", q))
			return
		}
		filter = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, name := range strings.Split(names, ",") {
		wild := name == "_all" || strings.Contains(name, "*")
		if !wild && s.indices[name] == nil {
			writeIndexNotFound(w, name)
			return
		}
		for iname, ix := range s.indices {
			if name != "_all" && iname != name {
				if ok, _ := path.Match(name, iname); !ok || !wild {
					continue
				}
			}
			for _, d := range ix.docs {
				if !filter || fieldText(d.source, field) == value {
					n++
				}
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"count": n, "_shards": map[string]int{"total": 1, "successful": 1, "skipped": 0, "failed": 0}})
}

// fieldText is a field's value as text, following dots into objects.
func fieldText(src map[string]any, field string) string {
	if v, ok := src[field]; ok {
		return fmt.Sprint(v)
	}
	head, rest, ok := strings.Cut(field, ".")
	if m, isMap := src[head].(map[string]any); ok && isMap {
		return fieldText(m, rest)
	}
	return ""
}

func (s *Server) get(w http.ResponseWriter, name, id string) {
	s.mu.Lock()
	ix := s.indices[name]
	var d *doc
	if ix != nil {
		d = ix.docs[id]
	}
	s.mu.Unlock()
	switch {
	case ix == nil:
		writeIndexNotFound(w, name)
	case d == nil:
		writeJSON(w, http.StatusNotFound, map[string]any{"_index": name, "_id": id, "found": false})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"_index": name, "_id": id, "_version": d.version, "found": true, "_source": d.source})
	}
}

func writeIndexNotFound(w http.ResponseWriter, name string) {
	e := map[string]any{"type": "index_not_found_exception", "reason": "no such index [" + name + "]",
		"index": name, "resource.type": "index_or_alias", "resource.id": name}
	writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"root_cause": []any{e},
		"type": e["type"], "reason": e["reason"], "index": name}, "status": 404})
}

// bulk serves _bulk.
func (s *Server) bulk(w http.ResponseWriter, r *http.Request, defIndex string) {
	s.mu.Lock()
	delay := s.delay
	fail := s.failN > 0
	code, after := s.failCode, s.failAfter
	if fail {
		s.failN--
	}
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	wire, err := io.ReadAll(io.LimitReader(r.Body, int64(s.opts.MaxContentLength)+1))
	if err != nil {
		return
	}
	if len(wire) > s.opts.MaxContentLength {
		writeError(w, http.StatusRequestEntityTooLarge, "content_too_long_exception",
			fmt.Sprintf("request body is too large: more than [%d] bytes", s.opts.MaxContentLength))
		return
	}
	if fail {
		if after != "" {
			w.Header().Set("Retry-After", after)
		}
		typ, reason := "es_rejected_execution_exception", "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1, max_coordinating_and_primary_bytes=0]"
		switch {
		case code == http.StatusServiceUnavailable:
			typ, reason = "cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/2/no master];"
		case code >= 500:
			typ, reason = "node_not_connected_exception", "[esfake][127.0.0.1:9300] Node not connected"
		}
		writeError(w, code, typ, reason)
		return
	}
	body := wire
	gz := strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip")
	if gz {
		zr, err := gzip.NewReader(bytes.NewReader(wire))
		if err == nil {
			body, err = io.ReadAll(zr)
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, "illegal_argument_exception", "failed to decompress the request body: "+err.Error())
			return
		}
	}
	items, status, typ, reason := s.parseBulk(body, defIndex)
	if status != 0 {
		writeError(w, status, typ, reason)
		return
	}
	start := time.Now()
	out, errorsSeen := s.apply(items)
	s.mu.Lock()
	s.stats.BulkRequests++
	s.stats.Items += len(items)
	s.stats.WireBytes += int64(len(wire))
	s.stats.BodyBytes += int64(len(body))
	s.bulks = append(s.bulks, BulkRequest{Path: r.URL.Path, Header: r.Header.Clone(), WireBytes: len(wire),
		BodyBytes: len(body), Items: len(items), Gzip: gz})
	s.mu.Unlock()
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"errors":%v,"took":%d,"items":[`, errorsSeen, time.Since(start).Milliseconds())
	for i, it := range out {
		if i > 0 {
			b.WriteByte(',')
		}
		enc, _ := json.Marshal(it)
		b.Write(enc)
	}
	b.WriteString("]}")
	w.WriteHeader(http.StatusOK)
	w.Write(b.Bytes())
}

type bulkItem struct {
	op, index, id string
	source        []byte
	// err is set when the item failed to parse: status, type, reason.
	errStatus       int
	errType, errMsg string
}

// parseBulk reads the NDJSON body; a malformed action line fails the whole
// request, a bad source only its item.
func (s *Server) parseBulk(body []byte, defIndex string) (items []bulkItem, status int, typ, reason string) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, 400, "action_request_validation_exception", "Validation Failed: 1: no requests added;"
	}
	if body[len(body)-1] != '\n' {
		return nil, 400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]"
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), len(body)+1)
	line := 0
	for sc.Scan() {
		line++
		raw := sc.Bytes()
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		var action map[string]struct {
			Index string `json:"_index"`
			ID    string `json:"_id"`
		}
		if err := json.Unmarshal(raw, &action); err != nil || len(action) != 1 {
			return nil, 400, "illegal_argument_exception",
				fmt.Sprintf("Malformed action/metadata line [%d], expected START_OBJECT or END_OBJECT but found [VALUE_STRING]", line)
		}
		var it bulkItem
		for op, meta := range action {
			it.op, it.index, it.id = op, meta.Index, meta.ID
		}
		switch it.op {
		case "index", "create", "update", "delete":
		default:
			return nil, 400, "illegal_argument_exception",
				fmt.Sprintf("Malformed action/metadata line [%d], expected field [create], [delete], [index] or [update] but found [%s]", line, it.op)
		}
		if it.index == "" {
			it.index = defIndex
		}
		if it.index == "" {
			return nil, 400, "action_request_validation_exception", "Validation Failed: 1: index is missing;"
		}
		if it.op != "delete" {
			if !sc.Scan() {
				return nil, 400, "illegal_argument_exception", fmt.Sprintf("The bulk request must be terminated by a newline [\\n] (line [%d] has no source)", line)
			}
			line++
			it.source = append([]byte(nil), sc.Bytes()...)
		}
		items = append(items, it)
	}
	if err := sc.Err(); err != nil {
		return nil, 400, "illegal_argument_exception", err.Error()
	}
	return items, 0, "", ""
}

// apply applies the items in order and returns their results.
func (s *Server) apply(items []bulkItem) ([]map[string]any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]map[string]any, len(items))
	anyErr := false
	for i, it := range items {
		res := s.applyOne(it, i)
		st := res["status"].(int)
		s.stats.ItemStatus[st]++
		if st >= 300 {
			anyErr = true
		}
		out[i] = map[string]any{it.op: res}
	}
	return out, anyErr
}

func failure(idx, id string, status int, typ, reason string) map[string]any {
	return map[string]any{"_index": idx, "_id": id, "status": status, "error": map[string]any{
		"type": typ, "reason": reason, "index_uuid": "esfake-uuid", "shard": "0", "index": idx}}
}

func (s *Server) applyOne(it bulkItem, seq int) map[string]any {
	if it.id == "" && (it.op == "index" || it.op == "create") {
		it.id = newID()
	}
	var src map[string]any
	if it.op != "delete" {
		dec := json.NewDecoder(bytes.NewReader(it.source))
		dec.UseNumber()
		if err := dec.Decode(&src); err != nil || src == nil {
			return failure(it.index, it.id, 400, "document_parsing_exception", "[1:1] failed to parse: source is not a JSON object")
		}
	}
	if it.op == "update" {
		d, ok := src["doc"].(map[string]any)
		if !ok {
			return failure(it.index, it.id, 400, "action_request_validation_exception", "Validation Failed: 1: script or doc is missing;")
		}
		src = d
	}
	if s.itemFault != nil {
		if st, typ, reason := s.itemFault(Item{Op: it.op, Index: it.index, ID: it.id, Source: plain(src), Seq: seq}); st != 0 {
			return failure(it.index, it.id, st, typ, reason)
		}
	}
	if reason := invalidIndexName(it.index); reason != "" {
		return failure(it.index, it.id, 400, "invalid_index_name_exception", "Invalid index name ["+it.index+"], "+reason)
	}
	ix := s.indices[it.index]
	ds := s.isDataStream(it.index)
	if ix == nil && !ds && s.opts.NoAutoCreate {
		return failure(it.index, it.id, 404, "index_not_found_exception", "no such index ["+it.index+"]")
	}
	if ds {
		if it.op != "create" {
			return failure(it.index, it.id, 400, "illegal_argument_exception",
				"only write ops with an op_type of create are allowed in data streams")
		}
		if _, ok := src["@timestamp"]; !ok {
			return failure(it.index, it.id, 400, "document_parsing_exception",
				"[1:1] failed to parse: data stream timestamp field [@timestamp] is missing")
		}
	}
	if ix == nil && it.op != "index" && it.op != "create" {
		return failure(it.index, it.id, 404, "index_not_found_exception", "no such index ["+it.index+"]")
	}
	if ix == nil {
		ix = s.index(it.index, false)
		ix.dataStream = ds
	}
	existing := ix.docs[it.id]
	switch it.op {
	case "delete":
		if existing == nil {
			return map[string]any{"_index": it.index, "_id": it.id, "_version": 1, "result": "not_found", "status": 404}
		}
		delete(ix.docs, it.id)
		return map[string]any{"_index": it.index, "_id": it.id, "_version": existing.version + 1, "result": "deleted", "status": 200}
	case "create":
		if existing != nil {
			return failure(it.index, it.id, 409, "version_conflict_engine_exception",
				fmt.Sprintf("[%s]: version conflict, document already exists (current version [%d])", it.id, existing.version))
		}
	case "update":
		if existing == nil {
			return failure(it.index, it.id, 404, "document_missing_exception", "["+it.id+"]: document missing")
		}
		merged := map[string]any{}
		for k, v := range existing.source {
			merged[k] = v
		}
		for k, v := range plain(src) {
			merged[k] = v
		}
		src = merged
	}
	if reason := mapDoc(ix.mapping, "", src); reason != "" {
		return failure(it.index, it.id, 400, "document_parsing_exception", reason)
	}
	version, result, status := 1, "created", 201
	if existing != nil {
		version, result, status = existing.version+1, "updated", 200
	} else {
		ix.order = append(ix.order, it.id)
	}
	ix.docs[it.id] = &doc{source: plain(src), version: version}
	ix.seqNo++
	return map[string]any{"_index": it.index, "_id": it.id, "_version": version, "result": result,
		"_shards": map[string]int{"total": 2, "successful": 1, "failed": 0}, "_seq_no": ix.seqNo - 1, "_primary_term": 1, "status": status}
}

func (s *Server) index(name string, create bool) *index {
	ix := s.indices[name]
	if ix == nil {
		ix = &index{docs: map[string]*doc{}, mapping: map[string]string{}}
		s.indices[name] = ix
	}
	return ix
}

// isDataStream reports whether a template with data_stream matches name.
func (s *Server) isDataStream(name string) bool {
	for _, raw := range s.templates {
		var t struct {
			IndexPatterns []string        `json:"index_patterns"`
			DataStream    json.RawMessage `json:"data_stream"`
		}
		if json.Unmarshal(raw, &t) != nil || len(t.DataStream) == 0 {
			continue
		}
		for _, p := range t.IndexPatterns {
			if ok, _ := path.Match(p, name); ok {
				return true
			}
		}
	}
	return false
}

// mapDoc checks a document against the dynamic mapping and extends it, the
// way Elasticsearch does: dotted keys are object paths, and a field keeps
// the kind it was first given. It returns the reason for a conflict.
func mapDoc(mapping map[string]string, prefix string, obj map[string]any) string {
	// Check first, then add, so a refused document leaves no mapping.
	added := map[string]string{}
	if r := walk(mapping, added, prefix, obj); r != "" {
		return r
	}
	for k, v := range added {
		mapping[k] = v
	}
	return ""
}

func walk(mapping, added map[string]string, prefix string, obj map[string]any) string {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := obj[k]
		full := strings.TrimPrefix(prefix+"."+k, ".")
		// Every dotted prefix of the key is an object.
		parts := strings.Split(full, ".")
		for i := 1; i < len(parts); i++ {
			p := strings.Join(parts[:i], ".")
			if kind := lookup(mapping, added, p); kind != "" && kind != "object" {
				return fmt.Sprintf("[1:2] failed to parse: can't merge a non object mapping [%s] with an object mapping", p)
			}
			added[p] = "object"
		}
		kind := kindOf(v)
		if kind == "" { // null
			continue
		}
		have := lookup(mapping, added, full)
		switch {
		case have == "object" && kind != "object":
			last := parts[len(parts)-1]
			return fmt.Sprintf("[1:2] object mapping for [%s] tried to parse field [%s] as object, but found a concrete value", full, last)
		case have != "" && have != "object" && kind == "object":
			return fmt.Sprintf("[1:2] failed to parse: can't merge a non object mapping [%s] with an object mapping", full)
		case (have == "long" || have == "double") && kind == "text":
			if _, err := strconv.ParseFloat(v.(string), 64); err != nil {
				return fmt.Sprintf("[1:2] failed to parse field [%s] of type [%s] in document. Preview of field's value: '%s'", full, have, v)
			}
		case have == "" || (have == "long" && kind == "double"):
			added[full] = kind
		}
		switch x := v.(type) {
		case map[string]any:
			if r := walk(mapping, added, full, x); r != "" {
				return r
			}
		case []any:
			for _, e := range x {
				if m, ok := e.(map[string]any); ok {
					if r := walk(mapping, added, full, m); r != "" {
						return r
					}
				}
			}
		}
	}
	return ""
}

func lookup(mapping, added map[string]string, p string) string {
	if k := added[p]; k != "" {
		return k
	}
	return mapping[p]
}

func kindOf(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case map[string]any:
		return "object"
	case []any:
		for _, e := range x {
			if k := kindOf(e); k != "" {
				return k
			}
		}
		return ""
	case json.Number:
		if _, err := x.Int64(); err == nil {
			return "long"
		}
		return "double"
	case bool:
		return "boolean"
	}
	return "text"
}

// plain turns json.Numbers into float64, as encoding/json would.
func plain(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = plainValue(v)
	}
	return out
}

func plainValue(v any) any {
	switch x := v.(type) {
	case json.Number:
		f, _ := x.Float64()
		return f
	case map[string]any:
		return plain(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = plainValue(e)
		}
		return out
	}
	return v
}

// invalidIndexName returns Elasticsearch's reason for refusing a name.
func invalidIndexName(name string) string {
	switch {
	case name != strings.ToLower(name):
		return "must be lowercase"
	case strings.ContainsAny(name, `\/*?"<>| ,#`):
		return `must not contain the following characters [ , ", *, \, <, |, ,, >, /, ?]`
	case strings.Contains(name, ":"):
		return "must not contain ':'"
	case strings.IndexAny(name[:1], "-_+") == 0:
		return "must not start with '_', '-', or '+'"
	case name == "." || name == "..":
		return "must not be '.' or '..'"
	case len(name) > 255:
		return "index name is too long, (" + strconv.Itoa(len(name)) + " > 255)"
	}
	return ""
}

func newID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, typ, reason string) {
	e := map[string]any{"type": typ, "reason": reason}
	writeJSON(w, status, map[string]any{"error": map[string]any{"root_cause": []any{e}, "type": typ, "reason": reason}, "status": status})
}
