# The gateway image used by docker-compose.yml for local development.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
COPY benches benches
RUN cargo build --release --locked --bin transcript-gateway

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/transcript-gateway /usr/local/bin/transcript-gateway
ENTRYPOINT ["transcript-gateway"]
CMD ["serve"]
