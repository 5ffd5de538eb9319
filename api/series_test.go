package api

import (
	"strings"
	"testing"
)

// /metrics read by series; Sum adds the series that carry the labels asked
// for.
func TestParseSeries(t *testing.T) {
	s, err := ParseSeries(strings.NewReader(`# HELP sluice_sink_records_total x
# TYPE sluice_sink_records_total counter
sluice_sink_records_total{sink="es",outcome="delivered"} 10
sluice_sink_records_total{outcome="dead",sink="es"} 2
sluice_sink_records_total{outcome="delivered",sink="file"} 5
# HELP sluice_ingest_connections y
# TYPE sluice_ingest_connections gauge
sluice_ingest_connections{listener="forward"} 3
# HELP sluice_cluster_replicas z
# TYPE sluice_cluster_replicas gauge
sluice_cluster_replicas 2
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Sum("sluice_sink_records_total", `sink="es"`, `outcome="delivered"`); got != 10 {
		t.Errorf("es delivered %v, want 10", got)
	}
	if got := s.Sum("sluice_sink_records_total", `outcome="delivered"`); got != 15 {
		t.Errorf("delivered %v, want 15", got)
	}
	if got := s[`sluice_sink_records_total{outcome="delivered",sink="es"}`]; got != 10 {
		t.Errorf("a series by its sorted labels: %v, want 10", got)
	}
	if got := s["sluice_cluster_replicas"]; got != 2 {
		t.Errorf("an unlabelled series: %v, want 2", got)
	}
	if got := s.Sum("sluice_ingest_connections"); got != 3 {
		t.Errorf("connections %v, want 3", got)
	}
}
