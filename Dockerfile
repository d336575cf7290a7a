# The platform image: ingest, serve and migrate all run from it.
FROM python:3.11-slim-bookworm
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir -r requirements.lock
COPY . .
RUN pip install --no-cache-dir --no-deps --no-build-isolation . && useradd --system eldercare
USER eldercare
CMD ["eldercare", "serve", "--host", "0.0.0.0"]
