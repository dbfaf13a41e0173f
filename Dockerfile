# Multi-stage build: a static-enough glibc binary on distroless, non-root.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin otel-admission

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
