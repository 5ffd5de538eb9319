// Package cwfake is an in-process CloudWatch Logs for tests: the AWS JSON
// 1.1 protocol (X-Amz-Target Logs_20140328.*, camelCase bodies, errors by
// __type) with the service's rules for PutLogEvents enforced as the service
// does: at most 10,000 events and 1,048,576 bytes (each message's UTF-8
// bytes plus 26) per call, events in chronological order spanning at most
// 24 hours, each event at most 1 MiB with its 26 bytes; events more than 2
// hours in the future, older than 14 days or older than the group's
// retention are accepted by the call but reported in
// rejectedLogEventsInfo. Groups and streams must exist; creating one twice
// is ResourceAlreadyExistsException.
package cwfake

import (
	"fmt"
	"sort"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sluicelog/sluice/internal/awsfake"
)

// Limits of PutLogEvents.
const (
	MaxEvents      = 10000
	MaxBatchBytes  = 1048576
	EventOverhead  = 26
	MaxEventBytes  = 1048576 // one message plus its overhead
	MaxSpan        = 24 * time.Hour
	TooNew         = 2 * time.Hour
	TooOld         = 14 * 24 * time.Hour
	maxNameGroup   = 512
	maxNameStream  = 512
	validRetention = "1 3 5 7 14 30 60 90 120 150 180 365 400 545 731 1096 1827 2192 2557 2922 3288 3653"
)

// Event is a stored log event.
type Event struct {
	Timestamp int64  `json:"timestamp"`
	Message   string `json:"message"`
}

type group struct {
	retention int
	streams   map[string][]Event
}

// Server is the fake service.
type Server struct {
	*awsfake.Server
	// Now is the service's clock for the age rules; nil means time.Now.
	Now func() time.Time

	mu       sync.Mutex
	groups   map[string]*group
	rejected map[string]int
	puts     []int // events per successful PutLogEvents
}

// New starts the fake.
func New() *Server {
	s := &Server{groups: map[string]*group{}, rejected: map[string]int{}}
	s.Server = awsfake.New("Logs_20140328", map[string]awsfake.Handler{
		"CreateLogGroup":     s.createLogGroup,
		"CreateLogStream":    s.createLogStream,
		"PutRetentionPolicy": s.putRetentionPolicy,
		"PutLogEvents":       s.putLogEvents,
	})
	return s
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Events returns the events of a stream, in the order stored.
func (s *Server) Events(groupName, stream string) []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.groups[groupName]; g != nil {
		return append([]Event(nil), g.streams[stream]...)
	}
	return nil
}

// Streams lists group/stream names with events, sorted.
func (s *Server) Streams() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for gn, g := range s.groups {
		for sn := range g.streams {
			out = append(out, gn+"/"+sn)
		}
	}
	sort.Strings(out)
	return out
}

// Retention returns a group's retention in days, 0 when never expiring.
func (s *Server) Retention(groupName string) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[groupName]
	if g == nil {
		return 0, false
	}
	return g.retention, true
}

// CreateGroup creates a group directly (as an operator would).
func (s *Server) CreateGroup(name string, retentionDays int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups[name] = &group{retention: retentionDays, streams: map[string][]Event{}}
}

// Rejected counts the events reported in rejectedLogEventsInfo, by kind
// (tooNew, tooOld, expired).
func (s *Server) Rejected() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.rejected {
		out[k] = v
	}
	return out
}

// Puts returns the number of events of each successful PutLogEvents.
func (s *Server) Puts() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.puts...)
}

type names struct {
	LogGroupName    string `json:"logGroupName"`
	LogStreamName   string `json:"logStreamName"`
	RetentionInDays int    `json:"retentionInDays"`
}

func validation(field, constraint string) *awsfake.Error {
	return awsfake.Errorf("InvalidParameterException", fmt.Sprintf("1 validation error detected: Value at '%s' failed to satisfy constraint: %s", field, constraint))
}

func (s *Server) createLogGroup(body []byte) (any, *awsfake.Error) {
	var in names
	if e := awsfake.Decode(body, &in); e != nil {
		return nil, e
	}
	if in.LogGroupName == "" || len(in.LogGroupName) > maxNameGroup {
		return nil, validation("logGroupName", "Member must have length between 1 and 512")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.groups[in.LogGroupName] != nil {
		return nil, awsfake.Errorf("ResourceAlreadyExistsException", "The specified log group already exists")
	}
	s.groups[in.LogGroupName] = &group{streams: map[string][]Event{}}
	return struct{}{}, nil
}

func (s *Server) createLogStream(body []byte) (any, *awsfake.Error) {
	var in names
	if e := awsfake.Decode(body, &in); e != nil {
		return nil, e
	}
	if in.LogStreamName == "" || len(in.LogStreamName) > maxNameStream {
		return nil, validation("logStreamName", "Member must have length between 1 and 512")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[in.LogGroupName]
	switch {
	case g == nil:
		return nil, awsfake.Errorf("ResourceNotFoundException", "The specified log group does not exist.")
	case g.streams[in.LogStreamName] != nil:
		return nil, awsfake.Errorf("ResourceAlreadyExistsException", "The specified log stream already exists")
	}
	g.streams[in.LogStreamName] = []Event{}
	return struct{}{}, nil
}

func (s *Server) putRetentionPolicy(body []byte) (any, *awsfake.Error) {
	var in names
	if e := awsfake.Decode(body, &in); e != nil {
		return nil, e
	}
	if !contains(validRetention, in.RetentionInDays) {
		return nil, validation("retentionInDays", "Member must satisfy enum value set: ["+validRetention+"]")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[in.LogGroupName]
	if g == nil {
		return nil, awsfake.Errorf("ResourceNotFoundException", "The specified log group does not exist.")
	}
	g.retention = in.RetentionInDays
	return struct{}{}, nil
}

func contains(list string, v int) bool {
	for _, f := range splitFields(list) {
		if f == fmt.Sprint(v) {
			return true
		}
	}
	return false
}

func splitFields(s string) []string {
	var out []string
	start := -1
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ' ' {
			if start >= 0 {
				out = append(out, s[start:i])
			}
			start = -1
		} else if start < 0 {
			start = i
		}
	}
	return out
}

type putInput struct {
	LogGroupName  string  `json:"logGroupName"`
	LogStreamName string  `json:"logStreamName"`
	LogEvents     []Event `json:"logEvents"`
}

type rejectedInfo struct {
	TooNewLogEventStartIndex *int `json:"tooNewLogEventStartIndex,omitempty"`
	TooOldLogEventEndIndex   *int `json:"tooOldLogEventEndIndex,omitempty"`
	ExpiredLogEventEndIndex  *int `json:"expiredLogEventEndIndex,omitempty"`
}

func (s *Server) putLogEvents(body []byte) (any, *awsfake.Error) {
	var in putInput
	if e := awsfake.Decode(body, &in); e != nil {
		return nil, e
	}
	n := len(in.LogEvents)
	if n == 0 || n > MaxEvents {
		return nil, validation("logEvents", fmt.Sprintf("Member must have length less than or equal to %d", MaxEvents))
	}
	size := 0
	for i, e := range in.LogEvents {
		if e.Message == "" {
			return nil, validation(fmt.Sprintf("logEvents.%d.member.message", i+1), "Member must have length greater than or equal to 1")
		}
		if !utf8.ValidString(e.Message) {
			return nil, awsfake.Errorf("InvalidParameterException", "Log event message is not valid UTF-8")
		}
		es := len(e.Message) + EventOverhead
		if es > MaxEventBytes {
			return nil, awsfake.Errorf("InvalidParameterException", fmt.Sprintf("Log event too large: %d bytes exceeds limit of %d", es, MaxEventBytes))
		}
		size += es
		if i > 0 && e.Timestamp < in.LogEvents[i-1].Timestamp {
			return nil, awsfake.Errorf("InvalidParameterException", "Log events in a single PutLogEvents request must be in chronological order.")
		}
	}
	if size > MaxBatchBytes {
		return nil, awsfake.Errorf("InvalidParameterException", fmt.Sprintf("Upload too large: %d bytes exceeds limit of %d", size, MaxBatchBytes))
	}
	if span := in.LogEvents[n-1].Timestamp - in.LogEvents[0].Timestamp; span > MaxSpan.Milliseconds() {
		return nil, awsfake.Errorf("InvalidParameterException", "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[in.LogGroupName]
	if g == nil {
		return nil, awsfake.Errorf("ResourceNotFoundException", "The specified log group does not exist.")
	}
	if g.streams[in.LogStreamName] == nil {
		return nil, awsfake.Errorf("ResourceNotFoundException", "The specified log stream does not exist.")
	}
	now := s.now().UnixMilli()
	var info rejectedInfo
	tooOld, expired, tooNew := 0, 0, n
	for i, e := range in.LogEvents {
		switch {
		case e.Timestamp < now-TooOld.Milliseconds():
			tooOld = i + 1
		case g.retention > 0 && e.Timestamp < now-int64(g.retention)*86400000:
			expired = i + 1
		}
		if e.Timestamp > now+TooNew.Milliseconds() && i < tooNew {
			tooNew = i
		}
	}
	if tooOld > 0 {
		info.TooOldLogEventEndIndex = &tooOld
		s.rejected["tooOld"] += tooOld
	}
	if expired > 0 {
		info.ExpiredLogEventEndIndex = &expired
		s.rejected["expired"] += expired - tooOld
	}
	if tooNew < n {
		info.TooNewLogEventStartIndex = &tooNew
		s.rejected["tooNew"] += n - tooNew
	}
	start := max(tooOld, expired)
	g.streams[in.LogStreamName] = append(g.streams[in.LogStreamName], in.LogEvents[start:tooNew]...)
	s.puts = append(s.puts, n)
	out := map[string]any{}
	if info != (rejectedInfo{}) {
		out["rejectedLogEventsInfo"] = info
	}
	return out, nil
}
