# sluice: make run starts on embedded defaults; make test runs vet and the tests.
GO      ?= go
BIN     := bin
PKGS    := ./...
BENCH   ?= .
BENCHTIME ?= 1s

.PHONY: all build run test vet fmt fuzz bench loadtest microbench clean

all: build

build:
	$(GO) build -o $(BIN)/sluice ./cmd/sluice

run: build
	$(BIN)/sluice $(if $(CONFIG),-config $(CONFIG))

vet:
	$(GO) vet $(PKGS)

# The Elasticsearch sink's end-to-end test writes to a real ES-compatible
# server, VictoriaLogs, built once from its Go module into bin/.
test: vet $(BIN)/victoria-logs
	SLUICE_VICTORIALOGS=$(CURDIR)/$(BIN)/victoria-logs $(GO) test -race -count=1 -timeout 15m $(PKGS)
	# Allocation counts need a build without the race detector.
	$(GO) test -count=1 -run Allocate ./sinks/transform/ ./enrich/

$(BIN)/victoria-logs:
	.ci/victoria-logs

fmt:
	gofmt -l -w .

# Short fuzzing runs of every fuzz target (longer: FUZZTIME=10m make fuzz).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzDecode -fuzztime=$(FUZZTIME) ./ingest/forward/
	$(GO) test -run='^$$' -fuzz=FuzzAppendValue -fuzztime=$(FUZZTIME) ./internal/jsonl/
	$(GO) test -run='^$$' -fuzz=FuzzDecodeJSON -fuzztime=$(FUZZTIME) ./ingest/httpin/
	$(GO) test -run='^$$' -fuzz=FuzzDecodeMsgpack -fuzztime=$(FUZZTIME) ./ingest/httpin/
	$(GO) test -run='^$$' -fuzz=FuzzFastJSONMatchesFull -fuzztime=$(FUZZTIME) ./ingest/httpin/
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=$(FUZZTIME) ./enrich/parser/
	$(GO) test -run='^$$' -fuzz=FuzzApply -fuzztime=$(FUZZTIME) ./sinks/transform/
	$(GO) test -run='^$$' -fuzz=FuzzExport -fuzztime=$(FUZZTIME) ./ingest/otlp/
	$(GO) test -run='^$$' -fuzz=FuzzJoin -fuzztime=$(FUZZTIME) ./ingest/multiline/
	$(GO) test -run='^$$' -fuzz=FuzzAppendObject -fuzztime=$(FUZZTIME) ./internal/jsonmp/

# The bench table: sluice's binary on its embedded defaults (file sink, or
# the Elasticsearch sink into VictoriaLogs), fixed load scenarios from
# loadgen, acked and end-to-end rates, CPU per record, peak RSS
# (docs/PERFORMANCE.md). BENCH_SCALE=0.1 for a quick look (all but
# the cluster scenario, whose phases need its 30 s); BENCH_RUN=fleet
# for the scenarios whose name matches it (a regular expression, e.g.
# BENCH_RUN="forward packed, ack, 4 conn$$|otlp"); FLUENT_BIT=/path/to/fluent-bit runs
# a Fluent Bit you built on the same Forward scenarios in the same runs and
# prints the ratios; BASELINE=/path/to/an/older/sluice does the same with
# another sluice binary (a change against the commit before it, run by run).
BENCH_SCALE ?= 1
BENCH_COUNT ?= 3
BENCH_RUN ?=
FLUENT_BIT ?=
BASELINE ?=
bench: build $(BIN)/victoria-logs
	$(GO) build -o $(BIN)/loadgen ./cmd/loadgen
	$(BIN)/loadgen -bench $(BIN)/sluice -bench-scale $(BENCH_SCALE) -bench-count $(BENCH_COUNT) \
		-bench-run "$(BENCH_RUN)" -bench-victorialogs $(BIN)/victoria-logs -bench-fluent-bit "$(FLUENT_BIT)" \
		-bench-baseline "$(BASELINE)"

loadtest: bench

# Micro-benchmarks: codecs, parsers, enrichment, the JSON-lines encoder, the
# pod cache, sinks, and ingest over loopback with acks into the embedded
# JetStream.
microbench:
	$(GO) test -run='^$$' -bench='$(BENCH)' -benchmem -benchtime=$(BENCHTIME) ./ingest/... ./internal/... ./queue/... ./sinks/... ./enrich/...

clean:
	rm -rf $(BIN)
