# sluice — see README.md. Every target runs real services started by hack/ scripts;
# caches live under $(SLUICE_CACHE).
SLUICE_CACHE ?= $(HOME)/.cache/sluice
export SLUICE_CACHE
export CARGO_TARGET_DIR ?= $(SLUICE_CACHE)/target

.PHONY: all build test demo bench lint services-up services-down clean-cache manifests
all: build

build:
	cargo build --release --workspace --bins --locked

## make test: every test, real Kafka + Postgres + Kubernetes control plane included.
test:
	@bash hack/test.sh

## make demo: installs what it needs, starts the services, runs worker + loadgen for a minute.
demo:
	@bash hack/demo.sh

## make bench: backlog drain, latency at a fixed rate and the raw COPY limit; report + plot.
bench:
	@bash hack/bench.sh

lint:
	cargo clippy --release --workspace --all-targets --locked -- -D warnings
	cargo fmt --all --check

## make manifests: manifests/install.yaml rendered from charts/sluice (helm from hack/helm.sh;
## operator/tests/install.rs fails when the committed file differs).
manifests:
	@bash hack/helm.sh install-yaml > manifests/install.yaml.tmp && mv manifests/install.yaml.tmp manifests/install.yaml
	@echo "wrote manifests/install.yaml"

services-up:
	@hack/kafka.sh start dev && hack/postgres.sh start dev

services-down:
	@hack/kafka.sh stop dev; hack/postgres.sh stop dev

include $(wildcard hack/mk/*.mk)

## make eval: fraud evaluation per traffic regime through the real pipeline (Kafka → worker →
## Postgres) beside the offline one; prints the tables, writes target/eval/report.json.
## make eval-offline: the offline evaluation alone (simulator → scorer, no services), written to
## target/eval/offline.json.
.PHONY: eval eval-offline
eval:
	@bash hack/eval.sh

eval-offline:
	cargo run --release --locked -p sluice-fraud --bin sluice-eval
