# accord container image.
#
#   docker build -t accord:dev .
#
# The builder runs exactly the README's build (`cargo build --release
# --locked`), so the image holds the same binary. The runtime stage is
# debian:bookworm-slim (glibc, zlib) with what librdkafka needs against a
# production broker (ca-certificates: the system trust store for TLS when no
# ssl.ca.location is given; libssl3: the OpenSSL runtime it is linked
# against, for TLS, SASL/SCRAM and OIDC token requests), plus curl for the
# compose healthcheck, running as an unprivileged user.

FROM rust:1-bookworm AS builder
WORKDIR /src
# rdkafka builds its bundled librdkafka with make and a C toolchain; the
# rust:1-bookworm image (buildpack-deps) already has them and zlib1g-dev.
COPY . .
RUN cargo build --release --locked \
 && install -D -m 0755 target/release/accord /out/accord

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin accord
COPY --from=builder /out/accord /usr/local/bin/accord
USER 10001:10001
# Default --listen is 127.0.0.1:9898; in a container pass --listen 0.0.0.0:9898.
EXPOSE 9898
ENTRYPOINT ["/usr/local/bin/accord"]
CMD ["--help"]
