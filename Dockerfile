# reconciler watch as a container: mount manifests at /manifests, or read them from a
# repository with `watch --git URL` (the image has git; override the command).
#   docker build -t qc-live-reconciler .
#   docker run -e QC_USER_ID -e QC_API_TOKEN -e IB_PASSWORD -p 127.0.0.1:9108:9108 \
#       -v "$PWD/deployments:/manifests:ro" -v reconciler-state:/state qc-live-reconciler
# /healthz and /metrics on port 9108 (all interfaces inside the container).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    RECONCILER_STATE=/state/state.db

# git: the git source (`--git URL`) and the revision of a mounted work tree.
RUN apt-get update && apt-get install -y --no-install-recommends git openssh-client \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY reconciler ./reconciler
COPY schemas ./schemas
RUN pip install --no-cache-dir '.[postgres]' \
    && useradd --system --uid 10001 --home-dir /state --create-home reconciler

USER reconciler
WORKDIR /state
EXPOSE 9108
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4).status == 200 else 1)"

# 0.0.0.0: Prometheus outside the container scrapes /metrics; the HEALTHCHECK uses loopback.
ENTRYPOINT ["reconciler", "watch", "/manifests", "--listen", "0.0.0.0:9108", "--log-format", "json"]
