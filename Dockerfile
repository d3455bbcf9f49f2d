# asof-stream: the daemon and the feature server in one slim image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    ASOF_SERVER__HOST=0.0.0.0

RUN useradd --create-home --uid 10001 asof \
 && mkdir -p /data /config && chown asof:asof /data /config

WORKDIR /src
COPY pyproject.toml README.md ./
COPY asof_stream ./asof_stream
RUN pip install ".[parquet]" && rm -rf /src

USER asof
WORKDIR /data
EXPOSE 6566
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6566/health', timeout=2)" || exit 1
ENTRYPOINT ["asof-stream"]
CMD ["run", "--config", "/config/asof.toml"]
