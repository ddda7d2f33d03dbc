# karch: two commands for a new user, `make demo` and `make test`. See README.md.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# The servers that tests/services/services.sh starts, and how tests find them. Non-default
# ports, so that a developer's own Kafka, Redis or MinIO is never touched.
export KARCHDEV_KAFKA_PORT ?= 19092
export KARCHDEV_KAFKA_CONTROLLER_PORT ?= 19093
export KARCHDEV_REDIS_PORT ?= 16379
export KARCHDEV_S3_PORT ?= 19000
export KARCHDEV_S3_ACCESS_KEY ?= karchtest
export KARCHDEV_S3_SECRET_KEY ?= karchtest-secret
export KARCHDEV_S3_BUCKET ?= karch-test
export KARCHDEV_CACHE ?= $(HOME)/.cache/karch
export KARCHDEV_STATE ?= $(KARCHDEV_CACHE)/state

TEST_ENV := KARCH_TEST_KAFKA=127.0.0.1:$(KARCHDEV_KAFKA_PORT) \
	KARCH_TEST_REDIS=127.0.0.1:$(KARCHDEV_REDIS_PORT) \
	KARCH_TEST_S3_ENDPOINT=http://127.0.0.1:$(KARCHDEV_S3_PORT) \
	KARCH_TEST_S3_BUCKET=$(KARCHDEV_S3_BUCKET) \
	KARCH_TEST_S3_ACCESS_KEY=$(KARCHDEV_S3_ACCESS_KEY) \
	KARCH_TEST_S3_SECRET_KEY=$(KARCHDEV_S3_SECRET_KEY) \
	KARCH_TEST_KUBECONFIG=$(KARCHDEV_STATE)/kube/admin.kubeconfig \
	KARCH_TEST_PROMTOOL=$(KARCHDEV_CACHE)/bin/promtool \
	KARCH_TEST_DUCKDB_PYTHON=$(KARCHDEV_CACHE)/duckdb/bin/python

GO_TEST_FLAGS ?= -race -count=1 -timeout 30m

.PHONY: help demo test chaos vet build services-up kube-up tools services-down services-status bench bench-shard

help:
	@echo "make demo           archive a million synthetic call records end to end on local servers"
	@echo "make test           start the local servers, then go vet and go test ./..."
	@echo "make chaos          every chaos scenario with 3 seeds on private servers; writes tests/chaos/results"
	@echo "make services-up    start (or reuse) Kafka, Redis and MinIO on 127.0.0.1"
	@echo "make kube-up        the same, and a local Kubernetes control plane (etcd, apiserver, controllers)"
	@echo "make services-down  stop the servers that services-up and kube-up started"
	@echo "make build          build bin/karch"
	@echo "make bench          Go benchmarks of the codec and compressor (bench/)"
	@echo "make bench-shard    one shard over 2 GB of call records on the local servers"

demo: services-up build
	tests/demo/demo.sh

test: services-up kube-up tools vet
	$(TEST_ENV) go test $(GO_TEST_FLAGS) ./...

# The chaos scenarios start (and kill, and restart) a private set of servers of their own,
# so they need none of services-up's. `make test` runs a seeded subset of them.
CHAOS_FLAGS ?= -seeds 1,2,3 -out tests/chaos/results
chaos:
	go run ./tests/chaos/cmd/chaos $(CHAOS_FLAGS)

vet:
	go vet ./...

build:
	go build -o bin/karch ./cmd/karch

services-up:
	tests/services/services.sh up

# The Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) that the
# Kubernetes tests need, beside the servers above; built once (about 13 minutes cold).
kube-up:
	tests/services/services.sh up kube

# What the tests use beside the servers: promtool (the alert rules' tests), DuckDB.
tools:
	tests/services/services.sh tools

services-down:
	tests/services/services.sh down
	KARCHDEV_STATE=$(KARCHDEV_CACHE)/state-chaos tests/services/services.sh down

services-status:
	tests/services/services.sh status

bench:
	go test -run '^$$' -bench . -benchmem -count 5 ./bench/

BENCH_SHARD_FLAGS ?= -gb 2 -runs 3
bench-shard: services-up build
	$(TEST_ENV) go run ./bench/shardbench $(BENCH_SHARD_FLAGS)
