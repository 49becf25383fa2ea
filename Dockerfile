# agentprof: multi-stage build (no `# syntax=` line: it would make every BuildKit build pull the
# dockerfile frontend image first). The dependency layer is built from the manifests alone, so it
# is cached until Cargo.toml or Cargo.lock change; the runtime image holds only the binary.
# No SQLX_OFFLINE is needed: the code uses no compile-time-checked query macros (only
# `sqlx::migrate!`, which embeds ./migrations).

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src

# 1. Dependencies only: a stub crate with the real manifests (the bench target must exist for
#    the manifest to load; it is not built).
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir -p src && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src target/release/agentprof* target/release/deps/agentprof* target/release/.fingerprint/agentprof*

# 2. The crate itself.
COPY src ./src
COPY migrations ./migrations
# The dashboard's pages and assets, compiled into the binary (scripts/check-build-context.sh holds
# this list to what the crate compiles in).
COPY ui ./ui
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin agentprof \
 && install -D target/release/agentprof /out/agentprof \
 && mkdir -p /out/data

# Runtime: glibc, CA certificates and a non-root user (uid 65532), nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/agentprof /usr/local/bin/agentprof
# The embedded SQLite store's directory, writable by the non-root user.
COPY --from=build --chown=65532:65532 /out/data /data
ENV AGENTPROF_BIND=0.0.0.0:8080 \
    AGENTPROF_OTLP_GRPC_BIND=0.0.0.0:4317 \
    AGENTPROF_DATA_DIR=/data \
    RUST_LOG=info,sqlx=warn
WORKDIR /data
VOLUME ["/data"]
USER nonroot:nonroot
# 8080: the API, the dashboard and OTLP/HTTP; 4317: OTLP/gRPC.
EXPOSE 8080 4317
# `agentprof probe` GETs /healthz on the bound port: no curl needed in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/agentprof", "probe"]
ENTRYPOINT ["/usr/local/bin/agentprof"]
CMD ["serve"]
