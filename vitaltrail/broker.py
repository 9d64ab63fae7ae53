"""The embedded MQTT broker (amqtt, in-process, MQTT 3.1.1) for the zero-set-up demo."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from amqtt.broker import Broker


@asynccontextmanager
async def embedded_broker(host: str, port: int) -> AsyncIterator[None]:
    """Run an anonymous amqtt broker on ``host:port`` for the duration of the block."""
    logging.getLogger("amqtt").setLevel(logging.WARNING)
    logging.getLogger("transitions").setLevel(logging.WARNING)
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    await broker.start()
    try:
        yield
    finally:
        await broker.shutdown()
