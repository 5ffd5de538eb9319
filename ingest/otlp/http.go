package otlp

import (
	"mime"
	"net/http"
	"strconv"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sluicelog/sluice/api"
	"github.com/sluicelog/sluice/ingest/httpin"
)

// LogsPath is where OTLP/HTTP exporters send logs.
const LogsPath = "/v1/logs"

const (
	contentProtobuf = "application/x-protobuf"
	contentJSON     = "application/json"
)

// Handler is the OTLP/HTTP handler, behind the bearer tokens when any:
// POST /v1/logs with an ExportLogsServiceRequest in protobuf or JSON,
// optionally gzip-compressed.
//
// Answers, as the OTLP specification has them, in the request's encoding:
// 200 with an ExportLogsServiceResponse once every record is stored (with
// partial_success counting the records refused alone); 400 with a
// google.rpc.Status for a body that is not a request (nothing stored);
// 413 above a size limit; 415 for another Content-Type or
// Content-Encoding; 429 with Retry-After: 1 when the stream is full; 503
// with Retry-After: 5 when JetStream cannot store.
func (r *Receiver) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(LogsPath, r.serveLogs)
	return api.BearerAuth(ListenerHTTP, r.tokens, r.auth)(mux)
}

func (r *Receiver) serveLogs(w http.ResponseWriter, req *http.Request) {
	// The answer is in the request's encoding; protobuf for anything else.
	mt, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
	ct := contentProtobuf
	if mt == contentJSON {
		ct = contentJSON
	}
	resp, st := r.serveExport(w, req, mt)
	if st != nil {
		r.count(r.httpM, st.Code, st)
		writeStatus(w, ct, st)
		return
	}
	r.count(r.httpM, http.StatusOK, nil)
	var body []byte
	if ct == contentJSON {
		body, _ = resp.MarshalJSON()
	} else {
		body, _ = resp.MarshalProto()
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// serveExport stores the request whose media type is mt.
func (r *Receiver) serveExport(w http.ResponseWriter, req *http.Request, mt string) (plogotlp.ExportResponse, *httpin.Status) {
	resp := plogotlp.NewExportResponse()
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return resp, &httpin.Status{Code: http.StatusMethodNotAllowed, Msg: "use POST"}
	}
	switch mt {
	case contentProtobuf, contentJSON:
	default:
		return resp, &httpin.Status{Code: http.StatusUnsupportedMediaType, Reason: ReasonContentType,
			Msg: "Content-Type " + strconv.Quote(req.Header.Get("Content-Type")) + " is not supported: use application/x-protobuf or application/json"}
	}
	if st := r.acquire(req.Context()); st != nil {
		return resp, st
	}
	defer r.sem.Release(1)
	body, release, st := r.body.Read(w, req)
	defer release()
	if st != nil {
		return resp, st
	}
	er := plogotlp.NewExportRequest()
	var err error
	if mt == contentJSON {
		err = er.UnmarshalJSON(body)
	} else {
		err = er.UnmarshalProto(body)
	}
	if err != nil {
		return resp, &httpin.Status{Code: http.StatusBadRequest, Reason: ReasonDecode,
			Msg: "body is not an OTLP ExportLogsServiceRequest: " + err.Error()}
	}
	out, st := r.export(req.Context(), ListenerHTTP, r.httpM, er.Logs(), len(body))
	if st != nil {
		return resp, st
	}
	if out.rejected > 0 {
		resp.PartialSuccess().SetRejectedLogRecords(int64(out.rejected))
		resp.PartialSuccess().SetErrorMessage(out.msg)
	}
	return resp, nil
}

// grpcCode is the gRPC status code an HTTP answer stands for, as OTLP maps
// them.
func grpcCode(httpCode int) codes.Code {
	switch httpCode {
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	case http.StatusMethodNotAllowed, http.StatusUnsupportedMediaType:
		return codes.Unimplemented
	}
	return codes.Unknown
}

// writeStatus answers st with a google.rpc.Status body in the request's
// encoding, as OTLP/HTTP requires of 4xx and 5xx answers.
func writeStatus(w http.ResponseWriter, ct string, st *httpin.Status) {
	s := &spb.Status{Code: int32(grpcCode(st.Code)), Message: st.Msg}
	var body []byte
	if ct == contentJSON {
		body, _ = protojson.Marshal(s)
	} else {
		body, _ = proto.Marshal(s)
	}
	if st.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(st.RetryAfter))
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(st.Code)
	_, _ = w.Write(body)
}
