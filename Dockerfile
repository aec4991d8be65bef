# Multi-stage: the dependencies, then the code, built in the Rust image; each binary
# then in slim Debian as an unprivileged user. The last stage, and so the default
# target, is the server alone; `--target client` builds the load and audit client.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Binaries without symbols: the image is for running, not for profiling.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
# The dependencies first, in a layer of their own, built against stand-in sources:
# a change to the code alone reuses it. The workspace's two manifests: the server's
# package at the root, the client's in client/ (--workspace builds both).
COPY Cargo.toml Cargo.lock ./
COPY client/Cargo.toml ./client/
RUN mkdir -p src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > client/main.rs \
    && cargo build --release --locked --workspace --bins \
    && rm -rf src client/main.rs
COPY migrations ./migrations
COPY src ./src
COPY client ./client
# The copied sources keep their own times, older than the stand-ins' builds: touched,
# cargo rebuilds the project's own crates.
RUN touch src/lib.rs src/main.rs client/main.rs \
    && cargo build --release --locked --workspace --bins

FROM debian:bookworm-slim AS client
RUN useradd --system --uid 10001 --no-create-home exchange
COPY --from=build /src/target/release/exchange-client /usr/local/bin/
USER 10001
ENTRYPOINT ["exchange-client"]

FROM debian:bookworm-slim AS server
RUN useradd --system --uid 10001 --no-create-home exchange
COPY --from=build /src/target/release/exchange-server /usr/local/bin/
USER 10001
EXPOSE 12345
# A request of the protocol itself, which creates nothing: healthy when it is answered.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/12345 && printf '9\\n<create/>' >&3 && grep -q '<results/>' <&3"]
ENTRYPOINT ["exchange-server"]
CMD ["--pin"]
