# Gatehouse: build with the Rust toolchain, run on a slim Debian as a
# non-root user, with the data (store, keys, admin socket) in the /data volume.
#
#   docker build -t gatehouse .
#   docker run --rm -it -v gatehouse-data:/data gatehouse users add admin --admin   # first user
#   docker run -d --name gatehouse -p 8080:8080 -v gatehouse-data:/data gatehouse
#
# See README.md, "Operations".

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p gatehouse --bin gatehouse \
 && install -m 0755 target/release/gatehouse /usr/local/bin/gatehouse

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin gatehouse \
 && install -d -m 0700 -o gatehouse -g gatehouse /data
COPY --from=build /usr/local/bin/gatehouse /usr/local/bin/gatehouse
ENV GATEHOUSE_HOME=/data \
    GATEHOUSE_LOG_FORMAT=json
VOLUME ["/data"]
USER gatehouse
WORKDIR /data
EXPOSE 8080
# SIGTERM (docker stop) drains: give it more than [server] shutdown_timeout,
# e.g. `docker stop -t 40`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["serve", "--host", "0.0.0.0"]
