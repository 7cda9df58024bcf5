# rekorwatch: `docker build -t rekorwatch .` then
#   docker run -v $PWD/config:/config -v rekorwatch-data:/data -p 9464:9464 rekorwatch
# The config is read from /config/rekorwatch.yaml; the default SQLite database lives in /data.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY monitor ./monitor
COPY migrations ./migrations
RUN python -m venv /opt/rekorwatch \
 && /opt/rekorwatch/bin/pip install --no-cache-dir . \
 && cp -r migrations /opt/rekorwatch/migrations

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /data rekorwatch \
 && mkdir -p /data /config && chown rekorwatch /data
COPY --from=build /opt/rekorwatch /opt/rekorwatch
COPY config/rekorwatch.yaml /config/rekorwatch.yaml
ENV PATH=/opt/rekorwatch/bin:$PATH \
    REKORWATCH_CONFIG=/config/rekorwatch.yaml \
    REKORWATCH_MIGRATIONS=/opt/rekorwatch/migrations \
    REKORWATCH_LISTEN=0.0.0.0:9464 \
    PYTHONUNBUFFERED=1
USER rekorwatch
WORKDIR /data
VOLUME ["/config", "/data"]
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD python -c "import os,urllib.request; h,_,p=os.environ.get('REKORWATCH_HEALTH','127.0.0.1:9464').rpartition(':'); urllib.request.urlopen(f'http://{h}:{p}/healthz', timeout=4)"
ENTRYPOINT ["rekorwatch"]
CMD ["run"]
