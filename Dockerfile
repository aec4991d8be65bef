# Multi-stage: build in the Rust image, run in slim Debian as an unprivileged user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock schema.sql ./
COPY src ./src
COPY client ./client
RUN cargo build --release --locked --bin exchange-server --bin exchange-client

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home exchange
COPY --from=build /src/target/release/exchange-server /src/target/release/exchange-client /usr/local/bin/
USER 10001
EXPOSE 12345
ENTRYPOINT ["exchange-server"]
CMD ["--pin"]
