"""ASGI entry point: ``uvicorn sample_apps.django_app.asgi:application``.

Django refuses the ASGI lifespan protocol, so this answers it: uvicorn runs no ``atexit`` hooks,
and ``lifespan.shutdown`` is where the embedded worker gets to finish the delivery in hand. The
worker itself starts on the first accepted delivery.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sample_apps.django_app.settings")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]

django_application = get_asgi_application()


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    else:
        await django_application(scope, receive, send)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            # Only a Guard that served a request has a worker to stop; importing it now would
            # build one just to stop nothing.
            webhooks = sys.modules.get("sample_apps.django_app.webhooks")
            if webhooks is not None:
                await asyncio.to_thread(webhooks.guard.stop_worker)
            await send({"type": "lifespan.shutdown.complete"})
            return
