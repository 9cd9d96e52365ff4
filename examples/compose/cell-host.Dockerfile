# cellmesh cell-host: one static (musl) binary on an empty base, with the
# pure and alpha cell components under /plugins.
#
# Built by examples/compose/build-images from a staging directory that holds
# only `cell-host`, `healthcheck`, `plugins/*.wasm` and an empty `cache/`;
# nothing is compiled here and nothing is pulled.
#
# Choose the cell with CELLMESH_PLUGIN (or --plugin): /plugins/pure.wasm,
# /plugins/alpha.wasm, or a component of your own mounted into the container.
FROM scratch

COPY cell-host healthcheck /usr/local/bin/
COPY plugins/ /plugins/
# Compiled-component cache, writable by the cell's user only (the host trusts
# no entry that another user could write). Give each service its own volume
# here so compiled code survives restarts; never share one volume between
# cells of different authors: one cell must not write native code another
# cell loads.
COPY --chown=65532:65532 cache/ /var/cache/cellmesh/

# No /etc/passwd in scratch: a numeric, unprivileged user.
USER 65532:65532

# PORT is left unset: cell-host listens on 0.0.0.0:8000 unless PORT (or
# --listen/--port) says otherwise, and `healthcheck` probes the same port.
ENV CELLMESH_CACHE_DIR=/var/cache/cellmesh \
    AIOS_DISCOVERY_URL=http://discovery:8001 \
    RUST_LOG=info \
    NO_COLOR=1
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/healthcheck"]

ENTRYPOINT ["/usr/local/bin/cell-host"]

LABEL org.opencontainers.image.title="cellmesh cell-host" \
      org.opencontainers.image.description="Runs a cellmesh cell plugin (a WebAssembly component) as a networked cell" \
      org.opencontainers.image.licenses="Apache-2.0"
