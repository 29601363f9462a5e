"""The embedded broker: kombu's filesystem transport, with messages written atomically.

kombu writes a message file in place, so a worker listing the folder can take a file
that is still empty and fail to decode it. Here each message is written under a name
no reader matches, then renamed into place (rename is atomic on one filesystem).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

ALIAS = "runpackfs"


class Channel(filesystem.Channel):
    """A filesystem channel whose messages appear whole or not at all."""

    # kombu names the second parameter "message" in one base and "payload" in the other
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = Path(self.data_folder_out) / name
        partial = final.with_name(f"{name}.part")  # readers take only "*.<queue>.msg"
        try:
            partial.write_bytes(str_to_bytes(dumps(payload)))
            partial.replace(final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    """The filesystem transport with atomic writes."""

    Channel = Channel


def register() -> str:
    """Make ``runpackfs://`` name this transport in kombu; returns the URL scheme."""
    TRANSPORT_ALIASES.setdefault(ALIAS, f"{__name__}:Transport")
    return f"{ALIAS}://"
