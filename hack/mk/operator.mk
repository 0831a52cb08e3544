# sluice-operator. Included by the top Makefile.
#   make operator        run the operator in the foreground against `make cluster-up`'s cluster
#   make crds            regenerate crds/ (and manifests/install.yaml) from operator/src/crd.rs (tests fail on drift)
#   make test-operator   unit + end-to-end tests (real control plane, Kafka, upstream CRDs)
#   make bench-operator  apply→children p99, 200 pipelines reconciled, operator RSS
OPERATOR_MK_DIR := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
OPERATOR_ROOT := $(abspath $(OPERATOR_MK_DIR)/../..)
SLUICE_CACHE ?= $(HOME)/.cache/sluice
OPERATOR_CARGO := CARGO_TARGET_DIR=$${CARGO_TARGET_DIR:-$(SLUICE_CACHE)/target} cargo
CLUSTER ?= default

.PHONY: operator crds test-operator bench-operator
operator:
	@kc=$$($(OPERATOR_ROOT)/hack/cluster.sh up $(CLUSTER) | tail -n1) && \
	  KUBECONFIG=$$kc kubectl apply --server-side -f $(OPERATOR_ROOT)/crds/ >&2 && \
	  echo "KUBECONFIG=$$kc" >&2 && \
	  KUBECONFIG=$$kc $(OPERATOR_CARGO) run --release -p sluice-operator --bin sluice-operator -- --lease-namespace default

crds:
	@$(OPERATOR_CARGO) run --release -q -p sluice-operator --bin crdgen > $(OPERATOR_ROOT)/crds/sluice.dev_pipelinedeployments.yaml
	@cp $(OPERATOR_ROOT)/crds/sluice.dev_pipelinedeployments.yaml $(OPERATOR_ROOT)/charts/sluice/files/
	@echo "wrote crds/ and charts/sluice/files/sluice.dev_pipelinedeployments.yaml"
	@$(MAKE) -s -C $(OPERATOR_ROOT) manifests

test-operator:
	$(OPERATOR_CARGO) test --release -p sluice-operator

bench-operator:
	$(OPERATOR_CARGO) bench -p sluice-operator --bench reconcile
