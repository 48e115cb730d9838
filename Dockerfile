# The costslo operator image: `costslo run` as a non-root user on a slim Python base.
# Build: docker build -t ghcr.io/costslo/costslo:$(git describe --tags) .
# Base images are pinned by version; pin them by digest as well in your registry mirror if you require it.

FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, from the pinned list, so a code change does not rebuild them.
COPY requirements.lock ./
RUN python -m venv /opt/costslo \
 && /opt/costslo/bin/pip install --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN /opt/costslo/bin/pip install --no-deps . \
 && /opt/costslo/bin/costslo --help >/dev/null

FROM python:3.11.14-slim-bookworm
LABEL org.opencontainers.image.title="costslo" \
      org.opencontainers.image.description="Kubernetes operator: cost per delivered inference request as an enforced SLO" \
      org.opencontainers.image.source="https://github.com/costslo/costslo" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/costslo /opt/costslo
# A fixed numeric user, so runAsNonRoot can verify it without a passwd lookup.
USER 65532:65532
ENV PATH=/opt/costslo/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# 8080: liveness (/healthz); 8081: /verdict and /metrics.
EXPOSE 8080 8081
ENTRYPOINT ["costslo"]
CMD ["run"]
