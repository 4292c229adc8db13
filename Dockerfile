FROM python:3.11-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core core
COPY ingest ingest
COPY flows flows
COPY state state
COPY notifier notifier
COPY ws_gateway ws_gateway
COPY storepulse storepulse
RUN pip install --no-cache-dir .
ENTRYPOINT ["storepulse"]
