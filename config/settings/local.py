"""Local development and the `make run` demo: embedded SQLite and a broker with no server."""

from .base import *  # noqa: F403
from .base import SECRET_KEY, VAR_DIR, env

SECRET_KEY = SECRET_KEY or "concord-local-development-key-not-for-production"
DEBUG = env.bool("DEBUG", default=False)

VAR_DIR.mkdir(parents=True, exist_ok=True)
for sub in ("broker/queue", "broker/processed", "broker/control"):
    (VAR_DIR / sub).mkdir(parents=True, exist_ok=True)
(VAR_DIR / "staticfiles").mkdir(parents=True, exist_ok=True)
