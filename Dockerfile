# The panel image used by docker-compose.yml for the web server, the worker and beat.

# The consoles' browser libraries (noVNC, xterm.js), exactly as package-lock.json pins them; no install
# scripts run. collectstatic below takes the files the panel serves from node_modules (STATICFILES_DIRS).
FROM node:20-bookworm-slim AS browser-assets
WORKDIR /assets
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc pkg-config libvirt-dev libvirt-clients openssh-client \
        qemu-utils libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY panel panel
COPY hypervisor hypervisor
COPY billing billing
COPY prepared_statements.py ./
RUN pip install --no-cache-dir .
COPY manage.py ./
COPY templates templates
COPY static static
COPY locale locale
COPY --from=browser-assets /assets/node_modules node_modules
RUN DEMO=1 PANEL_DATA_DIR=/tmp/build python manage.py collectstatic --no-input -v 0 \
    && mv /tmp/build/static /app/static-collected
ENV STATIC_ROOT=/app/static-collected PANEL_DATA_DIR=/var/lib/panel
EXPOSE 8000
# Web processes and threads sized from the container's CPU count (panel/gunicorn_conf.py; WEB_WORKERS and
# WEB_THREADS override).
CMD ["gunicorn", "-c", "python:panel.gunicorn_conf", "panel.wsgi"]
