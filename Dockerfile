# chatd in a container. The image runs either mode: with CHATD_DATABASE_URL set it is a
# stateless scale-out instance (see compose.yaml); without it, the embedded mode keeps its
# data in /app/data, which then needs a volume. Not built by CI: there is no Docker engine
# on the machine chatd is developed on.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p chatd-server --bin chatd

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /app --uid 10001 chatd
COPY --from=build /src/target/release/chatd /usr/local/bin/chatd
USER chatd
WORKDIR /app
# Listen on every interface inside the container; the defaults are loopback only.
ENV CHATD_LISTEN=0.0.0.0:3000 \
    CHATD_CREATION_LISTEN=0.0.0.0:8080
EXPOSE 3000 8080
ENTRYPOINT ["chatd"]
