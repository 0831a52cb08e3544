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

# The same control plane with a REAL node (kubelet + containerd + runc), Kafka and Postgres,
# all inside network namespace sluice-NAME (hack/node.sh; root). Needs `make images` first.
#   make node-up [NODE=name]         last line printed = the env file (KUBECONFIG, KAFKA_BOOTSTRAP, ...)
#   make node-shell [NODE=name]      a shell inside the namespace, with that env
#   make node-test [NODE=name]       the real-pod end-to-end test on a running node
#   make node-down [NODE=name]
NODE_SH := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../node.sh)
NODE ?= default

.PHONY: node-up node-down node-shell node-test
node-up:
	@$(NODE_SH) up $(NODE)
node-down:
	@$(NODE_SH) down $(NODE)
node-shell:
	@$(NODE_SH) exec $(NODE) -- bash
node-test:
	@$(NODE_SH) exec $(NODE) -- cargo test --release --workspace --locked --test real_pods --test autoscaling -- --ignored --nocapture
