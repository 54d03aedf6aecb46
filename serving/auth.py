"""Token authentication for the service: a grpc.aio server interceptor.

Callers send `authorization: Bearer <token>` metadata. Two tokens, compared in constant time:
- the admin token: every RPC, and the only one accepted by admin RPCs (Reload); with no admin token
  configured, admin RPCs are refused outright (a server never reloads for an unauthenticated caller);
- the data token, optional: when set, Rank and GetModelInfo need it (or the admin token); when unset they
  are open.
Health and reflection stay open (load balancers and grpcurl probe them). A missing or unknown token is
UNAUTHENTICATED; a valid data token on an admin RPC is PERMISSION_DENIED. Tokens come from files or
environment variables, never from the command line (it shows in `ps`).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

SERVICE_PREFIX = "/ecorank.v1.TrafficRegulator/"
ADMIN_METHODS = frozenset({SERVICE_PREFIX + "Reload"})


@dataclass(frozen=True)
class Tokens:
    admin: str | None = None
    data: str | None = None

    @staticmethod
    def load(*, admin_file: Path | None = None, data_file: Path | None = None) -> Tokens:
        """From files (first line, stripped), else ECORANK_ADMIN_TOKEN / ECORANK_DATA_TOKEN."""
        def read(path: Path | None, variable: str) -> str | None:
            if path is not None:
                token = path.read_text().strip()
                if not token:
                    raise ValueError(f"{path} is empty; expected a token on its first line")
                return token
            return os.environ.get(variable) or None

        return Tokens(admin=read(admin_file, "ECORANK_ADMIN_TOKEN"), data=read(data_file, "ECORANK_DATA_TOKEN"))


def _bearer(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            return text[len("Bearer "):] if text.startswith("Bearer ") else ""
    return None


def _matches(token: str | None, expected: str | None) -> bool:
    return token is not None and expected is not None and hmac.compare_digest(token.encode(), expected.encode())


def _deny(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    async def reject(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(reject)


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails],
                                                             Awaitable[grpc.RpcMethodHandler]],
                                details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = details.method
        if not method.startswith(SERVICE_PREFIX):  # health, reflection
            return await continuation(details)
        token = _bearer(details.invocation_metadata)
        admin = _matches(token, self.tokens.admin)
        if method in ADMIN_METHODS:
            if self.tokens.admin is None:
                return _deny(grpc.StatusCode.PERMISSION_DENIED,
                             f"{method}: admin RPCs are disabled; start the server with an admin token "
                             "(--admin-token-file or ECORANK_ADMIN_TOKEN) to allow them")
            if admin:
                return await continuation(details)
            if _matches(token, self.tokens.data):
                return _deny(grpc.StatusCode.PERMISSION_DENIED, f"{method} needs the admin token; the data "
                                                                "token may only rank")
            return _deny(grpc.StatusCode.UNAUTHENTICATED, f"{method}: missing or unknown token; send metadata "
                                                          "'authorization: Bearer <admin token>'")
        if self.tokens.data is None or admin or _matches(token, self.tokens.data):
            return await continuation(details)
        return _deny(grpc.StatusCode.UNAUTHENTICATED, f"{method}: missing or unknown token; send metadata "
                                                      "'authorization: Bearer <data token>'")
