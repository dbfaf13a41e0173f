# Multi-stage build: a glibc binary on distroless, non-root, stripped.
#
#   docker build -t otel-admission:dev \
#     --build-arg OTEL_ADMISSION_BUILD_COMMIT=$(git rev-parse --short HEAD) .
#
# The build context holds sources only (.dockerignore: no target/, no .git,
# no generated keys or certificates).
FROM rust:1.95-bookworm AS build
WORKDIR /src
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
# Dependencies first, in a layer of their own, so a change to our sources
# does not rebuild them: stub targets stand in for every target Cargo.toml
# declares (the binary, the library, the benches and tests declared by
# name, the workspace's crates; tests/manifests.rs checks the list).
COPY Cargo.toml Cargo.lock ./
COPY crates/core/Cargo.toml crates/core/
COPY crates/policy/Cargo.toml crates/policy/
RUN mkdir -p src benches tests crates/core/src crates/policy/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs crates/core/src/lib.rs crates/policy/src/lib.rs \
 && for b in policy inject rollout cluster rollout_pacing; do echo 'fn main() {}' > "benches/$b.rs"; done \
 && for t in operator_unit fidelity; do echo 'fn main() {}' > "tests/$t.rs"; done \
 && cargo build --release --locked --bin otel-admission \
 && rm -rf src benches tests crates/core/src crates/policy/src
COPY . .
# .git is not in the context: the commit `version` prints comes from here.
ARG OTEL_ADMISSION_BUILD_COMMIT=unknown
ENV OTEL_ADMISSION_BUILD_COMMIT=${OTEL_ADMISSION_BUILD_COMMIT}
# COPY keeps the files' own times, which may be older than the stubs' build:
# touching the crate roots makes cargo rebuild our crate, and only it.
RUN touch src/main.rs src/lib.rs crates/core/src/lib.rs crates/policy/src/lib.rs \
 && cargo build --release --locked --bin otel-admission

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/otel-admission /usr/local/bin/otel-admission
# Listen on all interfaces in a pod; TLS files come from a mounted Secret.
ENV OTEL_ADMISSION_LISTEN=0.0.0.0:8443 \
    OTEL_ADMISSION_ADMIN_LISTEN=0.0.0.0:8080 \
    OTEL_ADMISSION_LOG_FORMAT=json
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/otel-admission"]
CMD ["serve"]
