# cellmesh discovery: one static (musl) binary on an empty base.
#
# Built by examples/compose/build-images from a staging directory that holds
# only `discovery` and `healthcheck`; nothing is compiled here and nothing is
# pulled (FROM scratch is not an image, it is the empty base).
FROM scratch

COPY discovery healthcheck /usr/local/bin/

# No /etc/passwd in scratch: a numeric, unprivileged user.
USER 65532:65532

# The original's variables and defaults: DISCOVERY_PORT, CELL_ID.
ENV DISCOVERY_PORT=8001 \
    CELL_ID=primary \
    RUST_LOG=info \
    NO_COLOR=1
EXPOSE 8001

# `healthcheck` probes http://127.0.0.1:$DISCOVERY_PORT/health.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/healthcheck"]

ENTRYPOINT ["/usr/local/bin/discovery"]

LABEL org.opencontainers.image.title="cellmesh discovery" \
      org.opencontainers.image.description="The cellmesh discovery registry" \
      org.opencontainers.image.licenses="Apache-2.0"
