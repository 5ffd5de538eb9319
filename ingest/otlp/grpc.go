package otlp

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	_ "google.golang.org/grpc/encoding/gzip" // gzip-compressed requests, as the Collector's exporter sends by default
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluicelog/sluice/api"
	"github.com/sluicelog/sluice/ingest/httpin"
)

var protoSize plog.ProtoMarshaler

// logsService is LogsService/Export.
type logsService struct {
	plogotlp.UnimplementedGRPCServer
	r *Receiver
}

func (s *logsService) Export(ctx context.Context, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	r := s.r
	resp := plogotlp.NewExportResponse()
	st := r.acquire(ctx)
	if st == nil {
		var out outcome
		// The request's size in protobuf is close to its records' in
		// msgpack: the chunk's buffer starts at that and does not grow
		// record by record.
		out, st = r.export(ctx, ListenerGRPC, r.grpcM, req.Logs(), protoSize.LogsSize(req.Logs()))
		r.sem.Release(1)
		if st == nil && out.rejected > 0 {
			resp.PartialSuccess().SetRejectedLogRecords(int64(out.rejected))
			resp.PartialSuccess().SetErrorMessage(out.msg)
		}
	}
	if st != nil {
		r.count(r.grpcM, st.Code, st)
		return resp, grpcError(st)
	}
	r.count(r.grpcM, http.StatusOK, nil)
	return resp, nil
}

// grpcError is st as a gRPC status; a retryable one carries RetryInfo, as
// OTLP asks of RESOURCE_EXHAUSTED answers meant to be retried.
func grpcError(st *httpin.Status) error {
	s := status.New(grpcCode(st.Code), st.Msg)
	if st.RetryAfter > 0 {
		if d, err := s.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Duration(st.RetryAfter) * time.Second)}); err == nil {
			s = d
		}
	}
	return s.Err()
}

func (r *Receiver) newGRPCServer(extra ...grpc.ServerOption) *grpc.Server {
	opts := append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(int(r.cfg.MaxDecompressedBytes)),
		grpc.ChainUnaryInterceptor(r.grpcAuth),
	}, extra...)
	if age := r.cfg.GRPC.MaxConnectionAge; age > 0 {
		// gRPC spreads the age by ±10% itself.
		opts = append(opts, grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: age, MaxConnectionAgeGrace: r.cfg.StoreTimeout}))
	}
	s := grpc.NewServer(opts...)
	plogotlp.RegisterGRPCServer(s, &logsService{r: r})
	// The standard health service, for gRPC probes and load balancers'
	// health checks: SERVING until Shutdown begins. It needs no token.
	r.health = health.NewServer()
	healthpb.RegisterHealthServer(s, r.health)
	return s
}

// grpcAuth requires one of the bearer tokens in the authorization
// metadata, when there are tokens; the health service is open.
func (r *Receiver) grpcAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	if len(r.tokens) == 0 || strings.HasPrefix(info.FullMethod, "/grpc.health.v1.Health/") {
		return next(ctx, req)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	var authorization string
	if vs := md.Get("authorization"); len(vs) > 0 {
		authorization = vs[0]
	}
	reason := r.tokens.Check(authorization)
	if reason == "" {
		return next(ctx, req)
	}
	r.auth.WithLabelValues(ListenerGRPC, reason).Inc()
	r.grpcM.Requests.WithLabelValues("401").Inc()
	if reason == api.AuthMissing {
		return nil, status.Error(codes.Unauthenticated, "a bearer token is required")
	}
	return nil, status.Error(codes.Unauthenticated, "the bearer token is not valid")
}

func (r *Receiver) startGRPC(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", r.cfg.GRPC.Listen)
	if err != nil {
		return fmt.Errorf("otlp grpc: listen: %w", err)
	}
	tc, err := r.cfg.GRPC.TLS.Load()
	if err != nil {
		ln.Close()
		return fmt.Errorf("otlp grpc: tls.%w", err)
	}
	var creds []grpc.ServerOption
	if tc != nil {
		creds = append(creds, grpc.Creds(credentials.NewTLS(tc)))
	}
	r.grpc = r.newGRPCServer(creds...)
	r.grpcLn, r.grpcEnd = ln, make(chan struct{})
	go func() {
		defer close(r.grpcEnd)
		if err := r.grpc.Serve(ln); err != nil {
			r.log.Error("ingest server stopped", "listener", ListenerGRPC, "err", err)
		}
	}()
	r.log.Info("ingest listener started", "listener", ListenerGRPC, "addr", ln.Addr().String(), "tls", tc != nil)
	return nil
}
