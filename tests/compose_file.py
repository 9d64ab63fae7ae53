"""docker-compose.yml as the tests read it: the parsed file, and a service's environment with
Compose's ``${VAR:-default}`` interpolation done the way `docker compose` does it with an
empty .env (defaults taken; ``${VAR:?...}`` required values given as ``<VAR>``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parents[1]
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def interpolate(value: str) -> str:
    """``value`` with every ``${VAR:-default}`` replaced by its default (``$$`` is a ``$``)."""

    def one(m: re.Match[str]) -> str:
        return m["arg"] if m["op"] == ":-" else f"<{m['name']}>"

    return _VARIABLE.sub(one, value).replace("$$", "$")


def variables() -> set[str]:
    """Every variable the file reads from the environment (.env)."""
    return {m["name"] for m in _VARIABLE.finditer((ROOT / "docker-compose.yml").read_text())}


def environment(service: str) -> dict[str, str]:
    """A service's environment after interpolation (its YAML anchors merged)."""
    env = compose()["services"][service].get("environment") or {}
    return {name: interpolate(str(value)) for name, value in env.items()}
