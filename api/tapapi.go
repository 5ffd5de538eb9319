package api

import (
	"net/http"
	"slices"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/sluicelog/sluice/api/tap"
)

// mountTap serves GET /v1/tap: live records at a stage as NDJSON, streamed
// until the limit, or until the client goes.
func (s *Server) mountTap(r chi.Router, hub *tap.Hub, stages []string) {
	r.Get("/v1/tap", func(w http.ResponseWriter, req *http.Request) {
		v := req.URL.Query()
		q := tap.Query{Stage: v.Get("stage"), Match: v["match"], Condition: v.Get("condition")}
		if q.Stage == "" {
			q.Stage = tap.StageIngest
		}
		if q.Stage != tap.StageIngest && !slices.Contains(stages, q.Stage) {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "stage " + strconv.Quote(q.Stage) + ": not ingest or a sink's name"})
			return
		}
		var err error
		if s := v.Get("limit"); s != "" {
			if q.Limit, err = strconv.Atoi(s); err != nil || q.Limit < 0 {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be a non-negative integer"})
				return
			}
		}
		if s := v.Get("rate"); s != "" {
			if q.Rate, err = strconv.ParseFloat(s, 64); err != nil || q.Rate < 0 {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "rate must be a non-negative number (records per second)"})
				return
			}
		}
		t, err := hub.Open(q)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		defer hub.Close(t)
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		flusher, _ := w.(http.Flusher)
		if flusher != nil {
			flusher.Flush()
		}
		_ = t.Stream(req.Context(), func(line []byte) error {
			if _, err := w.Write(line); err != nil {
				return err
			}
			if flusher != nil {
				flusher.Flush()
			}
			return nil
		})
	})
}
