package loadtest

import (
	"bytes"
	"context"
	"fmt"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// OTLP modes: OTLP/HTTP with a protobuf or a JSON body, or OTLP/gRPC.
const (
	OTLPProtobuf = "protobuf"
	OTLPJSON     = "json"
	OTLPGRPC     = "grpc"
)

// otlpRequest encodes n records of pod p as one ExportLogsServiceRequest:
// one resource with the pod's Kubernetes attributes, and each record's
// line as its body with lg_run and lg_seq as attributes. The seq
// placeholders are found in the encoded bytes afterwards, so that they are
// rewritten in place like Forward's.
func (e *encoder) otlpRequest(p pod, n, salt int) ([]byte, []int) {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	ra := rl.Resource().Attributes()
	ra.PutStr("k8s.namespace.name", p.namespace)
	ra.PutStr("k8s.pod.name", p.name)
	ra.PutStr("k8s.container.name", p.container)
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	lrs.EnsureCapacity(n)
	ts := pcommon.NewTimestampFromTime(e.at)
	placeholders := make([]string, n)
	for i := range n {
		lr := lrs.AppendEmpty()
		lr.SetTimestamp(ts + pcommon.Timestamp(i))
		lr.Body().SetStr(e.cfg.Workload.line(e.rand, salt*n+i))
		lr.Attributes().PutStr("stream", "stdout")
		lr.Attributes().PutStr("lg_run", e.cfg.RunID)
		placeholders[i] = fmt.Sprintf("~%0*d", seqWidth-1, i)
		lr.Attributes().PutStr("lg_seq", placeholders[i])
	}
	req := plogotlp.NewExportRequestFromLogs(ld)
	var body []byte
	if e.cfg.Mode == OTLPJSON {
		body, _ = req.MarshalJSON()
	} else {
		body, _ = req.MarshalProto()
	}
	seqs := make([]int, n)
	from := 0
	for i, ph := range placeholders {
		at := bytes.Index(body[from:], []byte(ph))
		if at < 0 {
			panic("loadtest: OTLP seq placeholder not found")
		}
		seqs[i] = from + at
		from += at + len(ph)
	}
	return body, seqs
}

// rawCodec passes encoded protobuf through gRPC as it is, so that the
// generator sends its prepared bodies without marshalling them again.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append((*(v.(*[]byte)))[:0], data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

const exportMethod = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"

func dialOTLPGRPC(cfg *Config) (*grpc.ClientConn, error) {
	return grpc.NewClient(cfg.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
}

// exportGRPC sends one prepared request over gRPC.
func exportGRPC(ctx context.Context, cc *grpc.ClientConn, cfg *Config, body []byte) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if cfg.Token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+cfg.Token)
	}
	var resp []byte
	err := cc.Invoke(ctx, exportMethod, &body, &resp)
	if err != nil {
		return "gRPC " + status.Code(err).String(), err
	}
	return "gRPC OK", nil
}
