// Package fhfake is an in-process Amazon Data Firehose for tests: the AWS
// JSON 1.1 protocol (X-Amz-Target Firehose_20150804.*, PascalCase bodies,
// base64 record data, errors by __type) with PutRecordBatch's limits
// enforced as the service does: at most 500 records and 4 MiB of data per
// call, at most 1,000 KiB per record. Single records can be made to fail
// (FailedPutCount with a per-record ErrorCode), as under throttling.
package fhfake

import (
	"fmt"
	"sync"

	"github.com/sluicelog/sluice/internal/awsfake"
)

// Limits of PutRecordBatch.
const (
	MaxRecords     = 500
	MaxBatchBytes  = 4 << 20
	MaxRecordBytes = 1000 << 10
)

// Server is the fake service.
type Server struct {
	*awsfake.Server

	mu      sync.Mutex
	streams map[string][][]byte
	fault   func(stream string, data []byte) (code, message string)
	calls   []int
	seq     int
}

// New starts the fake with the named delivery streams.
func New(streams ...string) *Server {
	s := &Server{streams: map[string][][]byte{}}
	for _, n := range streams {
		s.streams[n] = [][]byte{}
	}
	s.Server = awsfake.New("Firehose_20150804", map[string]awsfake.Handler{
		"PutRecordBatch": s.putRecordBatch,
	})
	return s
}

// SetRecordFault calls f for each record; a code other than "" fails that
// record (ServiceUnavailableException, InternalFailure). nil clears it.
func (s *Server) SetRecordFault(f func(stream string, data []byte) (code, message string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
}

// Records returns the data of the records a stream accepted, in order.
func (s *Server) Records(stream string) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.streams[stream]...)
}

// Calls returns the record count of every PutRecordBatch that passed the
// limits.
func (s *Server) Calls() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.calls...)
}

type record struct {
	Data []byte `json:"Data"` // base64 in JSON, as the service's blobs
}

type batchInput struct {
	DeliveryStreamName string   `json:"DeliveryStreamName"`
	Records            []record `json:"Records"`
}

type response struct {
	RecordID     string `json:"RecordId,omitempty"`
	ErrorCode    string `json:"ErrorCode,omitempty"`
	ErrorMessage string `json:"ErrorMessage,omitempty"`
}

func (s *Server) putRecordBatch(body []byte) (any, *awsfake.Error) {
	var in batchInput
	if e := awsfake.Decode(body, &in); e != nil {
		return nil, e
	}
	n := len(in.Records)
	if n == 0 || n > MaxRecords {
		return nil, awsfake.Errorf("ValidationException", fmt.Sprintf("1 validation error detected: Value at 'records' failed to satisfy constraint: Member must have length less than or equal to %d", MaxRecords))
	}
	size := 0
	for i, r := range in.Records {
		if len(r.Data) > MaxRecordBytes {
			return nil, awsfake.Errorf("ValidationException", fmt.Sprintf("1 validation error detected: Value at 'records.%d.member.data' failed to satisfy constraint: Member must have length less than or equal to %d", i+1, MaxRecordBytes))
		}
		size += len(r.Data)
	}
	if size > MaxBatchBytes {
		return nil, awsfake.Errorf("InvalidArgumentException", fmt.Sprintf("Records size exceeds %d bytes limit: %d", MaxBatchBytes, size))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.streams[in.DeliveryStreamName]; !ok {
		return nil, awsfake.Errorf("ResourceNotFoundException", "Firehose "+in.DeliveryStreamName+" under account 123456789012 not found.")
	}
	s.calls = append(s.calls, n)
	out := struct {
		FailedPutCount   int        `json:"FailedPutCount"`
		Encrypted        bool       `json:"Encrypted"`
		RequestResponses []response `json:"RequestResponses"`
	}{RequestResponses: make([]response, n)}
	for i, r := range in.Records {
		if s.fault != nil {
			if code, msg := s.fault(in.DeliveryStreamName, r.Data); code != "" {
				out.FailedPutCount++
				out.RequestResponses[i] = response{ErrorCode: code, ErrorMessage: msg}
				continue
			}
		}
		s.seq++
		s.streams[in.DeliveryStreamName] = append(s.streams[in.DeliveryStreamName], r.Data)
		out.RequestResponses[i] = response{RecordID: fmt.Sprintf("%056d", s.seq)}
	}
	return out, nil
}
