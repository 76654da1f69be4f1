# One image for every role: docker run IMAGE <teckochecker command>, e.g. `api`, `worker`, `beat`, `flower`, `db init`.
# Without a command it runs `start`: the API, a worker and beat together (the embedded default).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

RUN groupadd --gid 10001 teckochecker \
    && useradd --uid 10001 --gid teckochecker --home-dir /app --no-create-home --shell /usr/sbin/nologin teckochecker

WORKDIR /app

# Dependencies in their own layer: a code change does not reinstall them.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY --chown=teckochecker:teckochecker . .
# The working directory holds the SQLite file, its WAL files and the embedded broker: the user must write it.
RUN chown teckochecker:teckochecker /app

USER teckochecker
EXPOSE 8000

# The API role answers /api/health; other roles override this check (see docker-compose.yml).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=4); sys.exit(0)"]

# Python is PID 1 and handles SIGTERM itself: Celery's warm shutdown, gunicorn's graceful stop, start's supervisor.
ENTRYPOINT ["python", "/app/cli.py"]
CMD ["start", "--host", "0.0.0.0"]
