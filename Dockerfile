# syntax=docker/dockerfile:1
# The hostguard image: the release binary alone on a distroless base, run as a numeric non-root
# user. Build from the repository root:
#   docker build -t hostguard:0.1.0 .
# tests/packaging.rs checks this file's structure (CI has no container engine to build it).

# The build stage runs on Debian bookworm, the release the runtime image (debian12) is made from,
# so that the binary needs no newer glibc than the runtime has.
ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# .dockerignore admits only what Cargo reads: the manifest, the lock file and the target sources.
COPY . .
# Cache mounts keep the registry and target directory between builds; the binary is copied out
# of the mount in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release --bin hostguard \
    && install -D -m 0555 target/release/hostguard /out/hostguard

# glibc and libgcc, CA certificates and tzdata; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="hostguard" \
      org.opencontainers.image.description="Admission controller that decides where AI workloads may send model traffic and where they may run" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/hostguard /hostguard
# distroless's nonroot user, by number, so that the kubelet can verify runAsNonRoot.
USER 65532:65532
# 8443: HTTPS webhook; 8080: plain-HTTP /livez, /readyz, /metrics.
EXPOSE 8443 8080
ENTRYPOINT ["/hostguard"]
CMD ["serve"]
