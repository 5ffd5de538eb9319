package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

// The shipped scenarios decode (unknown keys are errors) into valid runs.
func TestScenarios(t *testing.T) {
	files, _ := filepath.Glob("../../loadtest/scenarios/*.yaml")
	if len(files) == 0 {
		t.Fatal("no scenario files")
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var s Scenario
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(&s); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(s.Runs) == 0 {
			t.Fatalf("%s: no runs", f)
		}
		for _, r := range s.Runs {
			c := r.Config
			c.SetDefaults()
			if err := c.Validate(); err != nil || r.Name == "" {
				t.Errorf("%s: run %q: %v", f, r.Name, err)
			}
			if (c.Records == 0) == (c.Duration == 0) {
				t.Errorf("%s: run %q needs records or duration", f, r.Name)
			}
		}
	}
	var bad Scenario
	dec := yaml.NewDecoder(bytes.NewReader([]byte("runs:\n  - protocl: forward\n")))
	dec.KnownFields(true)
	if dec.Decode(&bad) == nil {
		t.Error("a misspelt key decoded")
	}
}

// -verify picks the kind of target from its form.
func TestVerifyTarget(t *testing.T) {
	for target, want := range map[string]VerifyConfig{
		"./data/out":                     {Dir: "./data/out"},
		"/var/lib/sluice/out":            {Dir: "/var/lib/sluice/out"},
		"http://127.0.0.1:8080/metrics":  {Metrics: "http://127.0.0.1:8080/metrics"},
		"https://sluice:8080/metrics/":   {Metrics: "https://sluice:8080/metrics/"},
		"http://127.0.0.1:9200":          {ESURL: "http://127.0.0.1:9200"},
		"https://es.example.com/prefix/": {ESURL: "https://es.example.com/prefix/"},
	} {
		var v VerifyConfig
		v.setTarget(target)
		if v != want || !v.set() {
			t.Errorf("%s: %+v, want %+v", target, v, want)
		}
	}
}
