"""A server-sent events client on a thread: what a ward page's EventSource receives, with
the time each message arrived (for the alert latency bench and the stream's tests)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2


@dataclass(frozen=True)
class Message:
    event: str
    data: str
    id: str | None
    arrived: float  # time.time() when its blank line arrived

    def json(self) -> Any:
        return json.loads(self.data)


class SseReader:
    """Reads ``url`` until closed; ``messages`` grows as they arrive, ``comments`` counts
    comment lines (keep-alives), ``retry`` is the last ``retry:`` field, ``ended`` is set when
    the server ends the stream."""

    def __init__(self, url: str, headers: Mapping[str, str], timeout_s: float = 30.0) -> None:
        self.messages: list[Message] = []
        self.comments = 0
        self.retry: int | None = None
        self.status: int | None = None
        self.body = b""  # a refusal's body
        self.ended = threading.Event()
        self._started = threading.Event()
        self._lock = threading.Condition()
        self._client = httpx2.Client(timeout=httpx2.Timeout(timeout_s))
        self._thread = threading.Thread(target=self._read, args=(url, dict(headers)), daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise TimeoutError(f"no answer from {url}")

    def _read(self, url: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", url, headers=headers) as answer:
                self.status = answer.status_code
                if answer.status_code != 200:
                    self.body = answer.read()
                    self._started.set()
                    return
                self._started.set()
                fields: dict[str, str] = {}
                for line in answer.iter_lines():
                    self._line(line, fields)
        except httpx2.HTTPError:
            pass
        finally:
            self._client.close()
            self._started.set()
            self.ended.set()
            with self._lock:
                self._lock.notify_all()

    def _line(self, line: str, fields: dict[str, str]) -> None:
        if line == "":
            if "data" in fields:
                message = Message(
                    fields.get("event", "message"), fields["data"], fields.get("id"), time.time()
                )
                with self._lock:
                    self.messages.append(message)
                    self._lock.notify_all()
            fields.clear()
        elif line.startswith(":"):
            self.comments += 1
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "retry" and value.isdigit():
                self.retry = int(value)
            elif name == "data" and "data" in fields:
                fields["data"] += "\n" + value
            else:
                fields[name] = value

    def wait_for(self, found: Callable[[list[Message]], bool], timeout_s: float) -> list[Message]:
        """The messages so far, once ``found`` holds of them (or the time is up, or the stream
        ended)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while not found(self.messages) and not self.ended.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
            return list(self.messages)

    def alerts(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.messages if m.event == "alert"]

    def close(self) -> None:
        self._client.close()
        self._thread.join(5)
