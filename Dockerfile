# The ferrolb image: one binary for the controller (with its webhook) and the speaker.
# docker build -t ferrolb/ferrolb .
FROM rust:1.95-trixie AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ferrolb

FROM debian:trixie-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/ferrolb /usr/bin/ferrolb
# The chart runs the controller as 65534; the speaker adds NET_RAW/NET_ADMIN for ARP/NDP.
USER 65534:65534
ENTRYPOINT ["/usr/bin/ferrolb"]
