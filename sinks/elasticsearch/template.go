package elasticsearch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/elastic/go-elasticsearch/v8/esapi"
)

// ensureTemplate installs the configured index template once, before the
// first document, so that no index is created with dynamic mappings. A
// failure fails the write, which the runner retries.
func (s *Sink) ensureTemplate(ctx context.Context) error {
	tc := s.cfg.Template
	if tc == nil || s.templateDone.Load() {
		return nil
	}
	s.templateMu.Lock()
	defer s.templateMu.Unlock()
	if s.templateDone.Load() {
		return nil
	}
	if !tc.Overwrite {
		res, err := esapi.IndicesExistsIndexTemplateRequest{Name: tc.Name}.Do(ctx, s.client)
		if err != nil {
			return fmt.Errorf("elasticsearch: index template %s: %w", tc.Name, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			s.log.Info("index template exists; left as it is", "template", tc.Name)
			s.templateDone.Store(true)
			return nil
		}
	}
	body, err := s.templateBody()
	if err != nil {
		return err
	}
	res, err := esapi.IndicesPutIndexTemplateRequest{Name: tc.Name, Body: bytes.NewReader(body)}.Do(ctx, s.client)
	if err != nil {
		return fmt.Errorf("elasticsearch: index template %s: %w", tc.Name, err)
	}
	defer res.Body.Close()
	resp, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.IsError() {
		return fmt.Errorf("elasticsearch: index template %s: %d: %s", tc.Name, res.StatusCode, responseReason(resp))
	}
	s.log.Info("index template installed", "template", tc.Name)
	s.templateDone.Store(true)
	return nil
}

// templateBody is the template file's content or the built-in template.
func (s *Sink) templateBody() ([]byte, error) {
	tc := s.cfg.Template
	if tc.File != "" {
		body, err := os.ReadFile(tc.File)
		if err != nil {
			return nil, fmt.Errorf("template.file: %w", err)
		}
		if !json.Valid(body) {
			return nil, fmt.Errorf("template.file: %s is not JSON", tc.File)
		}
		return body, nil
	}
	return BuiltinTemplate(s.cfg.templatePatterns(), tc.DataStream, tc.Priority, s.jopts.TimeKey)
}

// BuiltinTemplate is sluice's index template for container logs: the time
// as date_nanos, strings as keyword (with log and message also as text),
// and the Kubernetes labels and annotations as keywords.
func BuiltinTemplate(patterns []string, dataStream bool, priority int, timeKey string) ([]byte, error) {
	props := map[string]any{
		"log":     map[string]any{"type": "text"},
		"message": map[string]any{"type": "text"},
		"kubernetes": map[string]any{"properties": map[string]any{
			"labels":      map[string]any{"type": "object", "dynamic": true},
			"annotations": map[string]any{"type": "object", "dynamic": true},
		}},
	}
	if timeKey != "" {
		props[timeKey] = map[string]any{"type": "date_nanos"}
	}
	t := map[string]any{
		"index_patterns": patterns,
		"priority":       priority,
		"_meta":          map[string]any{"created_by": "sluice"},
		"template": map[string]any{
			"settings": map[string]any{"index": map[string]any{"mapping": map[string]any{"total_fields": map[string]any{"limit": 2000}}}},
			"mappings": map[string]any{
				"dynamic_templates": []any{
					map[string]any{"strings_as_keywords": map[string]any{
						"match_mapping_type": "string",
						"mapping":            map[string]any{"type": "keyword", "ignore_above": 1024},
					}},
				},
				"properties": props,
			},
		},
	}
	if dataStream {
		t["data_stream"] = map[string]any{}
	}
	return json.Marshal(t)
}
