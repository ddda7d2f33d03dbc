# karch: two commands for a new user, `make demo` and `make test`. See README.md.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# The servers that tests/services/services.sh starts, and how tests find them. Non-default
# ports, so that a developer's own Kafka, Redis or MinIO is never touched.
export KARCHDEV_KAFKA_PORT ?= 19092
export KARCHDEV_KAFKA_CONTROLLER_PORT ?= 19093
export KARCHDEV_KAFKA_SASL_PORT ?= 19094
export KARCHDEV_KAFKA_MTLS_PORT ?= 19095
export KARCHDEV_KAFKA_SASL_USER ?= karch
export KARCHDEV_KAFKA_SASL_PASSWORD ?= karch-kafka-secret
export KARCHDEV_REDIS_PORT ?= 16379
export KARCHDEV_REDIS_TLS_PORT ?= 16380
export KARCHDEV_S3_PORT ?= 19000
export KARCHDEV_S3_ACCESS_KEY ?= karchtest
export KARCHDEV_S3_SECRET_KEY ?= karchtest-secret
export KARCHDEV_S3_BUCKET ?= karch-test
export KARCHDEV_S3_LOCKED_BUCKET ?= karch-test-locked
export KARCHDEV_S3_KMS_KEY ?= karch-test-key
export KARCHDEV_PG_PORT ?= 15432
export KARCHDEV_PG_USER ?= karch
export KARCHDEV_PG_PASSWORD ?= karch-pg-secret
export KARCHDEV_ICEBERG_REST_PORT ?= 18181
export KARCHDEV_CACHE ?= $(HOME)/.cache/karch
export KARCHDEV_STATE ?= $(KARCHDEV_CACHE)/state

TEST_ENV := KARCH_TEST_KAFKA=127.0.0.1:$(KARCHDEV_KAFKA_PORT) \
	KARCH_TEST_KAFKA_SASL=127.0.0.1:$(KARCHDEV_KAFKA_SASL_PORT) \
	KARCH_TEST_KAFKA_MTLS=127.0.0.1:$(KARCHDEV_KAFKA_MTLS_PORT) \
	KARCH_TEST_KAFKA_SASL_USER=$(KARCHDEV_KAFKA_SASL_USER) \
	KARCH_TEST_KAFKA_SASL_PASSWORD=$(KARCHDEV_KAFKA_SASL_PASSWORD) \
	KARCH_TEST_REDIS=127.0.0.1:$(KARCHDEV_REDIS_PORT) \
	KARCH_TEST_REDIS_TLS=127.0.0.1:$(KARCHDEV_REDIS_TLS_PORT) \
	KARCH_TEST_TLS=$(KARCHDEV_STATE)/tls \
	KARCH_TEST_S3_ENDPOINT=http://127.0.0.1:$(KARCHDEV_S3_PORT) \
	KARCH_TEST_S3_BUCKET=$(KARCHDEV_S3_BUCKET) \
	KARCH_TEST_S3_LOCKED_BUCKET=$(KARCHDEV_S3_LOCKED_BUCKET) \
	KARCH_TEST_S3_KMS_KEY=$(KARCHDEV_S3_KMS_KEY) \
	KARCH_TEST_S3_ACCESS_KEY=$(KARCHDEV_S3_ACCESS_KEY) \
	KARCH_TEST_S3_SECRET_KEY=$(KARCHDEV_S3_SECRET_KEY) \
	KARCH_TEST_ICEBERG_SQL='postgres://$(KARCHDEV_PG_USER):$(KARCHDEV_PG_PASSWORD)@127.0.0.1:$(KARCHDEV_PG_PORT)/karch_iceberg?sslmode=disable' \
	KARCH_TEST_ICEBERG_REST=http://127.0.0.1:$(KARCHDEV_ICEBERG_REST_PORT) \
	KARCH_TEST_KUBECONFIG=$(KARCHDEV_STATE)/kube/admin.kubeconfig \
	KARCH_TEST_NODE=$(KARCHDEV_STATE)/node \
	KARCH_TEST_CTR=$(KARCHDEV_CACHE)/bin/ctr \
	KARCH_TEST_PROMTOOL=$(KARCHDEV_CACHE)/bin/promtool \
	KARCH_TEST_DUCKDB_PYTHON=$(KARCHDEV_CACHE)/duckdb/bin/python \
	KARCH_TEST_KARCH=$(CURDIR)/bin/karch-testhooks

# Three test binaries at once on two cores: the longest packages (tests/kube, tests/e2e,
# tests/chaos) mostly wait on servers, pods and backoffs. A warm make test took 7 min 59 s
# with go test's default of two and 6 min 45 s with three, measured side by side.
GO_TEST_FLAGS ?= -race -count=1 -timeout 30m -p 3

.PHONY: help test-karch demo demo-build demo-needs-dir demo-needs-s3 kafka-up duckdb-core duckdb test chaos chaos-up vet build image services-up kube-up tools services-down services-status bench bench-shard bench-query bench-peers bench-node

help:
	@echo "make demo           archive a million synthetic call records end to end into a directory (STORE=s3: MinIO, Redis, Iceberg)"
	@echo "make test           start the local servers, then go vet and go test ./..."
	@echo "make chaos          every chaos scenario with 3 seeds on private servers; writes tests/chaos/results"
	@echo "make services-up    start (or reuse) Kafka, Redis, MinIO, PostgreSQL and an Iceberg REST catalog on 127.0.0.1"
	@echo "make kube-up        the same, and a local Kubernetes control plane (etcd, apiserver, controllers)"
	@echo "make services-down  stop the servers that services-up and kube-up started"
	@echo "make build          build bin/karch"
	@echo "make image          karch's container image as an OCI archive, bin/karch-image.tar (imported into the local node when it runs)"
	@echo "make bench          Go benchmarks of the codec and compressor (bench/)"
	@echo "make bench-shard    one shard over 2 GB of call records on the local servers"
	@echo "make bench-query    DuckDB queries over JSON Lines and over Parquet (after make bench-shard BENCH_SHARD_FLAGS=-parquet)"
	@echo "make bench-peers    the same topic archived by karch, OSO's kafka-backup engine and kcat | zstd | aws"
	@echo "make bench-node     the kind bench's workload as a CronJob run on the local node (make kube-up)"

# STORE=dir (the default) needs Kafka alone: a directory store and an in-process lease.
# STORE=s3 is the production path: MinIO, the Redis lease and an Iceberg table. On a fresh
# machine what the demo needs waits on the network and the compiler: fetched side by side.
STORE ?= dir
demo:
	$(MAKE) --no-print-directory -j3 demo-needs-$(STORE)
	STORE=$(STORE) tests/demo/demo.sh

demo-needs-dir: kafka-up demo-build duckdb-core
demo-needs-s3: services-up demo-build duckdb
demo-needs-%:
	@echo "make demo: STORE=$*: want dir or s3" >&2; exit 3

demo-build: build
	go build -o bin/demo-produce ./tests/demo/produce

# Without the TLS and SASL listeners, which only tests use: no certificates to make.
kafka-up:
	KARCHDEV_KAFKA_SASL_PORT= KARCHDEV_KAFKA_MTLS_PORT= tests/services/services.sh kafka

duckdb-core:
	tests/services/services.sh duckdb core

# The packages in go list's order. Naming the slowest four (tests/e2e, kube, audit, chaos)
# first made them compete with one another for the whole run: 9 min 40 s against 8 min 14 s,
# and a Kafka metadata request in tests/audit that went unanswered for 30 s.
test: services-up kube-up chaos-up tools vet test-karch
	$(TEST_ENV) go test $(GO_TEST_FLAGS) ./...

# The karch binary with its test hooks (cmd/karch/testhook.go), which the packages that run
# karch as a process share (internal/testenv.MainWithKarch).
test-karch:
	go build -tags karch_testhooks -o bin/karch-testhooks ./cmd/karch

# The chaos scenarios start (and kill, and restart) a private set of servers of their own,
# so they need none of services-up's. `make test` runs a seeded subset of them. Four seeds
# of every scenario injected 964 faults in 62 min on the project's 2-core machine
# (tests/chaos/results/results.md, 2026-12-08).
CHAOS_FLAGS ?= -seeds 1,2,3,4 -out tests/chaos/results
chaos:
	go run ./tests/chaos/cmd/chaos $(CHAOS_FLAGS)

# The chaos tests' private servers, started before the test binaries compete for the cores;
# the tests reuse them, and restart whatever a scenario killed.
chaos-up:
	go run ./tests/chaos/cmd/chaos -up

vet:
	go vet ./...

build:
	go build -o bin/karch ./cmd/karch

# The Dockerfile's image without a container engine: the same static binary, user and files
# (internal/ociimage), written as an OCI archive that `ctr images import`, `podman load` and
# `kind load image-archive` read.
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
image:
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/linux/karch ./cmd/karch
	go run ./tools/image -binary bin/linux/karch -name docker.io/library/karch:dev -out bin/karch-image.tar
	tests/services/services.sh import bin/karch-image.tar

# PostgreSQL (iceberg-go's SQL catalog) and an Iceberg REST catalog beside the three: `up iceberg`.
services-up:
	tests/services/services.sh up iceberg

# The Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)
# and a node (a kubelet with containerd and runc) that the Kubernetes tests need, beside the
# servers above; built once (about 20 minutes cold).
kube-up:
	tests/services/services.sh up iceberg kube

# What the tests use beside the servers: promtool (the alert rules' tests), DuckDB.
tools:
	tests/services/services.sh tools

# DuckDB and pyarrow in a virtualenv: the demo's query, and the tests' independent readers.
duckdb:
	tests/services/services.sh duckdb

services-down:
	tests/services/services.sh down
	KARCHDEV_STATE=$(KARCHDEV_CACHE)/state-chaos tests/services/services.sh down

services-status:
	tests/services/services.sh status

bench: services-up
	$(TEST_ENV) go test -run '^$$' -bench . -benchmem -count 5 ./bench/

BENCH_SHARD_FLAGS ?= -gb 2 -runs 3
bench-shard: services-up build
	$(TEST_ENV) go run ./bench/shardbench $(BENCH_SHARD_FLAGS)

# The same topic archived by karch (one and two shards), OSO's kafka-backup engine and kcat
# piped through zstd into the AWS CLI, alternating; the table and chart go to bench/results.
# The first run builds the OSO peer with cargo (minutes); never part of make test.
BENCH_PEERS_FLAGS ?= -gb 2 -runs 3 -results bench/results
# Three analyst queries by DuckDB over the JSON Lines and over the Parquet pieces of the
# newest archive that bench-shard with -parquet left in the local MinIO, alternating.
BENCH_QUERY_FLAGS ?= --runs 3
bench-query: services-up duckdb
	$(TEST_ENV) $(KARCHDEV_CACHE)/duckdb/bin/python bench/query/query.py $(BENCH_QUERY_FLAGS)

bench-peers: services-up build
	peers=$$(bench/peers/setup.sh) && eval "$$peers" && $(TEST_ENV) go run ./bench/shardbench -peers -oso "$$OSO" -kcat "$$KCAT" $(BENCH_PEERS_FLAGS)

# bench/kind's workload on the local node: a CronJob run over RECORDS call records (default
# 2,000,000 in 3 hourly windows), its table and wall time printed.
bench-node: services-up kube-up image
	bench/node/run.sh
