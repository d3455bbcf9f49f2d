# asof-stream: the daemon and the feature server in one slim image.
# Pinned to one Python patch release on one Debian release, so rebuilds are repeatable.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    ASOF_SERVER__HOST=0.0.0.0 ASOF_SERVER__ENABLED=true

RUN useradd --create-home --uid 10001 asof \
 && mkdir -p /data /config && chown asof:asof /data /config

WORKDIR /src
COPY pyproject.toml README.md ./
COPY asof_stream ./asof_stream
RUN pip install . && rm -rf /src

USER asof
WORKDIR /data
EXPOSE 6566
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6566/health', timeout=2)" || exit 1
ENTRYPOINT ["asof-stream"]
# The daemon with its feature server on (ASOF_SERVER__ENABLED above): what HEALTHCHECK polls.
CMD ["run", "--config", "/config/asof.toml"]
