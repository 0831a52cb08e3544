# Local Kubernetes control plane (etcd + kube-apiserver + controller-manager + scheduler +
# kwok fake nodes), built from hack/k8s/go.mod. Included by the top Makefile.
#   make cluster-up [CLUSTER=name]   last line printed = the admin kubeconfig path
#   make cluster-down [CLUSTER=name]
CLUSTER_SH := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../cluster.sh)
CLUSTER ?= default

.PHONY: cluster-build cluster-up cluster-down cluster-status cluster-env
cluster-build:
	@$(CLUSTER_SH) build
cluster-up:
	@$(CLUSTER_SH) up $(CLUSTER)
cluster-down:
	@$(CLUSTER_SH) down $(CLUSTER)
cluster-status:
	@$(CLUSTER_SH) status $(CLUSTER)
cluster-env:
	@$(CLUSTER_SH) env $(CLUSTER)
