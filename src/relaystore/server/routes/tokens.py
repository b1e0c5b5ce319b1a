"""Agent tokens: ``POST /v1/tokens`` issues one, ``POST /v1/tokens/revoke`` refuses one from now on.

(Memory tokens are issued by the item routes, :mod:`relaystore.server.routes.items`.)
"""

from __future__ import annotations

from pydantic import BaseModel, TypeAdapter
from starlette.responses import Response

from relaystore import wire
from relaystore.server.revocation import revoke
from relaystore.server.routes._common import STR, json_of, obj, ref
from relaystore.server.tokens import issue_token, parse_ttl, unverified_claims
from relaystore.server.web import Call, Op, reply
from relaystore.wire import RevokeRequest, TokenRequest

_TOKEN: TypeAdapter[TokenRequest] = TypeAdapter(TokenRequest)
_REVOKE: TypeAdapter[RevokeRequest] = TypeAdapter(RevokeRequest)


async def issue(call: Call) -> Response:
    body: TokenRequest = await call.parse(_TOKEN, "token request")
    ttl = parse_ttl(body.ttl)
    token = issue_token(
        call.config.signing_key,
        task=body.task,
        attempt=body.attempt,
        producer=body.producer,
        ttl=ttl,
        reads=body.read,
        tenant=call.tenant,
        audience=call.config.audience(call.tenant),
    )
    claims = unverified_claims(token)
    return reply({"token": token, "jti": claims["jti"], "expires_at": claims["exp"]}, 201)


async def revoke_token(call: Call) -> Response:
    body: RevokeRequest = await call.parse(_REVOKE, "revoke request")
    await revoke(call.store, body.jti, body.expires_at)
    return reply({"revoked": body.jti})


OPERATIONS: list[Op] = [
    Op(
        "POST",
        wire.TOKENS,
        issue,
        "Issue an agent token for one (task, attempt, producer).",
        request=json_of(ref("TokenRequest")),
        responses={201: json_of(obj(token=STR, jti=STR, expires_at={"type": "integer"}))},
    ),
    Op(
        "POST",
        wire.TOKENS_REVOKE,
        revoke_token,
        "Revoke an agent token by its jti, on every server of this store.",
        request=json_of(ref("RevokeRequest")),
        responses={200: json_of(obj(revoked=STR))},
    ),
]

REQUEST_MODELS: list[type[BaseModel]] = [TokenRequest, RevokeRequest]
