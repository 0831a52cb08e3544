# sluice-operator. Included by the top Makefile.
#   make operator        run the operator in the foreground against `make cluster-up`'s cluster
#   make crds            regenerate crds/ (and manifests/install.yaml) from operator/src/crd.rs (tests fail on drift)
#   make test-operator   unit + end-to-end tests (real control plane, Kafka, upstream CRDs)
#   make bench-operator  apply→children p99, 200 pipelines reconciled, operator RSS
OPERATOR_MK_DIR := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
OPERATOR_ROOT := $(abspath $(OPERATOR_MK_DIR)/../..)
# cargo builds in the CARGO_TARGET_DIR the top Makefile exports.
CLUSTER ?= default

.PHONY: operator crds test-operator bench-operator
operator:
	@kc=$$($(OPERATOR_ROOT)/hack/cluster.sh up $(CLUSTER) | tail -n1) && \
	  KUBECONFIG=$$kc kubectl apply --server-side -f $(OPERATOR_ROOT)/crds/ >&2 && \
	  echo "KUBECONFIG=$$kc" >&2 && \
	  KUBECONFIG=$$kc cargo run --release -p sluice-operator --bin sluice-operator -- --lease-namespace default

crds:
	@cargo run --release -q -p sluice-operator --bin crdgen > $(OPERATOR_ROOT)/crds/sluice.dev_pipelinedeployments.yaml
	@cp $(OPERATOR_ROOT)/crds/sluice.dev_pipelinedeployments.yaml $(OPERATOR_ROOT)/charts/sluice/files/
	@echo "wrote crds/ and charts/sluice/files/sluice.dev_pipelinedeployments.yaml"
	@$(MAKE) -s -C $(OPERATOR_ROOT) manifests

test-operator:
	cargo test --release -p sluice-operator

bench-operator:
	cargo bench -p sluice-operator --bench reconcile
