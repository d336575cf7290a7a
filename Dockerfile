# The platform image: ingest, serve and migrate all run from it.
FROM node:20-bookworm-slim AS web
WORKDIR /web
COPY platform/web/package.json platform/web/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM python:3.11-slim-bookworm
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir -r requirements.lock
COPY . .
COPY --from=web /web/node_modules /opt/eldercare-web/node_modules
ENV ELDERCARE_WEB_VENDOR_DIR=/opt/eldercare-web/node_modules
RUN pip install --no-cache-dir --no-deps --no-build-isolation . && useradd --system eldercare
USER eldercare
CMD ["eldercare", "serve", "--host", "0.0.0.0"]
