# buildhook itself: the web app and the worker run from this one image.
FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY builder builder
COPY webhooks webhooks
COPY workers workers
COPY buildhook buildhook
COPY templates templates
RUN pip install --no-cache-dir -e '.[postgres]'
ENV BUILDHOOK_DATA_DIR=/data
VOLUME /data
EXPOSE 8000
CMD ["buildhook", "web", "--host", "0.0.0.0", "--port", "8000"]
