# buildhook itself: the web app and the worker run from this one image.
#   docker build -t buildhook .     (docker-compose.yml builds it for you)
ARG PYTHON_IMAGE=python:3.11-slim

# 1. The wheel, built from the sources as `make dist` builds it.
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY builder builder
COPY webhooks webhooks
COPY workers workers
COPY buildhook buildhook
COPY templates templates
COPY static static
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# 2. The service: the wheel installed (not editable), git for clones, run as an unprivileged user.
FROM ${PYTHON_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client \
 && rm -rf /var/lib/apt/lists/*
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir "$(ls /wheels/buildhook-*.whl)[postgres]" && rm -rf /wheels
RUN useradd --system --uid 10001 --user-group --home-dir /data --create-home buildhook
# metrics/: each process group's Prometheus files; compose shares it between web and worker (owned here,
# so a new named volume mounted on it is the user's too).
RUN mkdir /data/metrics && chown buildhook:buildhook /data/metrics
USER buildhook
WORKDIR /data
ENV BUILDHOOK_DATA_DIR=/data
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["buildhook", "web", "--host", "0.0.0.0", "--port", "8000"]
