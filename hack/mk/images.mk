# Container images without a Docker engine (buildah; see hack/images.sh). Included by the top
# Makefile. Needs root.
#   make images          release binaries → ghcr.io/sluice-dev/sluice-{worker,operator}:<version>,
#                        the local distroless base and registry.k8s.io/pause:3.10; docker archives
#                        in target/images/{sluice-worker,sluice-operator,pause}.tar
#                        (`kind load image-archive F`; `ctr -n k8s.io images import F`, one F per call)
#   make images-list     the images in hack/images.sh's buildah store, the archives
IMAGES_SH := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../images.sh)

.PHONY: images images-list
images:
	@bash $(IMAGES_SH) build

images-list:
	@bash $(IMAGES_SH) list
