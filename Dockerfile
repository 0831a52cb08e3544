# Runtime images of sluice, in the style of kube-rs/controller-rs: the release binaries are
# built outside (cargo, by hack/images.sh, which also strips their debug info into
# target/images/bin/) and this file only copies them onto a small non-root base. No RUN
# instructions: the base has no shell.
#
#   make images                      (hack/images.sh: binaries, local base image, both targets,
#                                     docker archives in target/images/)
#   docker build --target worker   -t ghcr.io/sluice-dev/sluice-worker:0.1.0 .
#   docker build --target operator -t ghcr.io/sluice-dev/sluice-operator:0.1.0 .
#                                    (the same, with a Docker engine, after hack/images.sh
#                                     or a manual copy put the binaries in target/images/bin/)
#
# The context is the repository root; .dockerignore lets only the two staged binaries in.
# The binaries link only glibc, libm and libgcc_s dynamically (zlib is built in through
# rdkafka's `libz-static` feature), all of which distroless/cc has. No registry is reachable
# here, so hack/images.sh makes this base locally from the same Debian 12 packages, under the
# same name; elsewhere the upstream image serves.

FROM gcr.io/distroless/cc-debian12:nonroot AS base
ARG VERSION=0.0.0-dev
LABEL org.opencontainers.image.source="https://github.com/sluice-dev/sluice" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.vendor="sluice"
# distroless "nonroot": uid/gid 65532, home /home/nonroot. Numeric, so that Kubernetes'
# runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
WORKDIR /home/nonroot

# The binaries stay owned by root (COPY's default) and mode 0755: the uid that runs them
# cannot overwrite them, even where the root filesystem is writable.
FROM base AS worker
LABEL org.opencontainers.image.title="sluice-worker" \
      org.opencontainers.image.description="sluice worker: consumes transactions from Kafka, validates and scores them, lands them in PostgreSQL exactly once"
COPY target/images/bin/sluice-worker /usr/local/bin/sluice-worker
ENTRYPOINT ["/usr/local/bin/sluice-worker"]

FROM base AS operator
LABEL org.opencontainers.image.title="sluice-operator" \
      org.opencontainers.image.description="sluice operator: turns PipelineDeployment custom resources into sluice-worker Deployments, their configuration, storage and monitoring"
COPY target/images/bin/sluice-operator /usr/local/bin/sluice-operator
ENTRYPOINT ["/usr/local/bin/sluice-operator"]
