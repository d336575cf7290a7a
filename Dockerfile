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
# A fixed uid: the broker's entrypoint gives the shared login folder to it (ELDERCARE_PLATFORM_UID).
RUN pip install --no-cache-dir --no-deps --no-build-isolation . && useradd --system --uid 10001 eldercare \
    && mkdir -p /var/lib/eldercare && chown eldercare /var/lib/eldercare
# The state folder is the user's (not /app/state, which is root's): the simulated home's world file, and SMS
# messages in a local file when no provider (ELDERCARE_SMS_URL) is set.
ENV ELDERCARE_STATE_DIR=/var/lib/eldercare
USER eldercare
CMD ["eldercare", "serve", "--host", "0.0.0.0"]
