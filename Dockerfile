# The production image of transcript-gateway:
#
#   docker build -t transcript-gateway .
#   docker run -p 127.0.0.1:8787:8787 -e TG_AUTH_SECRET=... transcript-gateway
#
# Dependencies are compiled in a layer of their own (cargo-chef), so a change
# to the sources rebuilds only the crate. The final image is distroless: the
# binary, glibc and CA certificates, no shell and no build tools, run as the
# unprivileged `nonroot` user (65532). It listens on 0.0.0.0:8787 (which
# needs TG_AUTH_SECRET or TG_AUTH_PUBLIC_KEY_FILE), keeps the embedded
# backend's data under /var/lib/transcript-gateway (mount a volume there),
# checks itself with `transcript-gateway healthcheck` and drains on SIGTERM.
# `tests/integration/deploy.rs` checks this file.

FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# The recipe: the manifest and lock file with stub sources, which change only
# when the dependencies do.
FROM chef AS planner
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
COPY migrations migrations
RUN cargo chef prepare --recipe-path recipe.json

# The dependencies alone, cached until the recipe changes.
FROM chef AS cacher
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --bin transcript-gateway --recipe-path recipe.json

# The crate, on top of the compiled dependencies. benches/ holds the tg-bench
# [[bin]] the manifest names, so cargo needs it to read Cargo.toml.
FROM cacher AS builder
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
COPY migrations migrations
RUN cargo build --release --locked --bin transcript-gateway \
    && mkdir -p /out/data \
    && cp target/release/transcript-gateway /out/transcript-gateway

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder /out/transcript-gateway /usr/local/bin/transcript-gateway
COPY --from=builder --chown=65532:65532 /out/data /var/lib/transcript-gateway
ENV TG_LISTEN=0.0.0.0:8787 \
    TG_DATA_DIR=/var/lib/transcript-gateway
WORKDIR /var/lib/transcript-gateway
USER 65532:65532
EXPOSE 8787
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["transcript-gateway", "healthcheck"]
ENTRYPOINT ["transcript-gateway"]
CMD ["serve"]
