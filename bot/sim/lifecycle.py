"""The lifecycle every local stand-in shares: `with Server() as s:` starts it, leaving the
block stops it, and `url` is its loopback address. Each server says only how it starts,
stops and which port it got."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class LoopbackService(ABC):
    """Context-manager and address boilerplate for servers on 127.0.0.1."""

    host: str = "127.0.0.1"

    @abstractmethod
    def start(self) -> Self:
        """Start serving (idempotence is up to the server); return self."""

    @abstractmethod
    def stop(self) -> None:
        """Stop serving and release the port."""

    @property
    @abstractmethod
    def port(self) -> int:
        """The bound port; RuntimeError before start()."""

    @property
    def running(self) -> bool:
        try:
            return bool(self.port)
        except RuntimeError:
            return False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> Self:
        return self if self.running else self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
