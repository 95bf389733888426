# syntax=docker/dockerfile:1
# stockd in a container: built with Swift 6.3.1 on Debian 12, run on debian:bookworm-slim.
#
#   docker build -t stockd .
#   docker run -d --name stockd -p 127.0.0.1:7878:7878 -p 127.0.0.1:9100:9100 -v stockd-data:/var/lib/stockd stockd
#
#       -v /etc/stockd/auth:/run/secrets/stockd-auth:ro stockd
#
# The container listens on 0.0.0.0 (the only way a published port reaches it), which stockd refuses
# without credentials: it reads them from $STOCKD_AUTH_FILE, /run/secrets/stockd-auth (a Docker or
# Compose secret, or a bind mount as above), which must be owned by uid 10001 and mode 600
# (deploy/README.md, "Container"). Without it stockd exits 2 with one line saying so.
# Arguments after the image name are added to the flags below (e.g. --workers 4).

# ---- build ----------------------------------------------------------------------------------------
FROM swift:6.3.1-bookworm AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libuv1-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first: this layer is rebuilt only when the manifest or the pins change.
# Package.resolved is optional (a fresh clone may not have it): the glob copies what is there.
COPY Package.* ./
COPY Plugins ./Plugins
RUN swift package resolve
COPY . .
# The BuildInfo plugin reads the commit with git; the checkout belongs to another uid in here.
RUN git config --global --add safe.directory /src \
    && swift build -c release --product stockd --static-swift-stdlib \
    && install -D -m 0755 "$(swift build -c release --show-bin-path)/stockd" /out/stockd

# ---- runtime --------------------------------------------------------------------------------------
FROM debian:bookworm-slim
# libuv1: stockd's event loops; libstdc++6: the Swift runtime's C++ support (Swift itself and
# Foundation are linked in statically: `ldd stockd` lists libc, libm, libstdc++, libgcc_s, libuv only).
# curl: the HEALTHCHECK below, which asks GET /ready on the metrics port.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libuv1 libstdc++6 curl \
    && rm -rf /var/lib/apt/lists/*
# A system user with no shell and no home of its own: stockd needs only its data directory.
# A fixed uid/gid, so a host can own the volume and the auth file for it.
RUN groupadd --system --gid 10001 stockd \
    && useradd --system --uid 10001 --gid stockd --no-create-home --home-dir /var/lib/stockd --shell /usr/sbin/nologin stockd \
    && install -d -o stockd -g stockd -m 0750 /var/lib/stockd
COPY --from=build /out/stockd /usr/local/bin/stockd
# Fails the image build if a shared library is missing at runtime.
RUN /usr/local/bin/stockd --version
ENV STOCKD_AUTH_FILE=/run/secrets/stockd-auth
USER 10001:10001
WORKDIR /var/lib/stockd
# The journal and snapshots: keep them on a volume, or every restart is a new, empty stockd.
VOLUME ["/var/lib/stockd"]
# 7878: the binary protocol; 9100: GET /metrics, /healthz, /ready (no authentication).
EXPOSE 7878 9100
# Ready = recovered, journal healthy, every worker loop serving (503 with the reason otherwise).
# start-period: recovery of a long journal runs before the metrics port opens.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD curl -fsS --max-time 2 http://127.0.0.1:9100/ready || exit 1
# SIGTERM (docker stop) is a graceful stop: answer what was read, snapshot, exit 0. Give it time.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/stockd", "--host", "0.0.0.0", "--port", "7878", "--metrics-port", "9100", \
            "--data-dir", "/var/lib/stockd", "--log-format", "json"]
CMD []
