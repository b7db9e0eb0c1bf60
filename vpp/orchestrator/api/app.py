"""The HTTP API and dashboard of a running site (FastAPI; OpenAPI at ``/openapi.json``,
its pages at ``/docs``).

Reads answer from the :class:`LiveState` the API process keeps from the bus, or, for
what only a process knows (a unit's safety history, the grid's finished events with
their compliance, the market's state), ask that process over the bus as the user's
identity. Commands go to the process that owns the target, as the user's bus identity
(:class:`BusGateway`): the process decides and audits; the API maps its answer onto
HTTP (403 not authorised, 429 rate limited, 422 invalid, 404 unknown, 502 failed, 504
no answer).

Authentication: ``Authorization: Bearer TOKEN``, or a session cookie from
``POST /api/login`` (user and password) or ``GET /login?token=...`` (the link ``vpp run``
prints). A request authenticated by cookie that changes something must carry the
header ``X-VPP: 1`` (a page of another origin cannot send it without the browser
asking first), so a cookie alone cannot be used by a forged form.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from vpp.errors import CommandError, CommandTimeoutError, MessageError
from vpp.orchestrator.api.config import ApiSection
from vpp.orchestrator.api.credentials import Principal, Sessions, authenticate
from vpp.orchestrator.api.gateway import BusGateway
from vpp.orchestrator.api.metrics import SiteMetrics
from vpp.orchestrator.api.state import LiveState
from vpp.orchestrator.bus.auth import Policy
from vpp.orchestrator.bus.command_models import COMMANDS

__all__ = ["ApiContext", "create_app"]

COOKIE = "vpp_session"
#: Live streams served at once; more get 503 (each costs a task and a JSON per period).
MAX_STREAMS = 200
#: Verified bearer tokens remembered (by SHA-256), so a scripted client does not pay
#: the scrypt check (tens of ms, on purpose) on every request.
_TOKEN_CACHE = 256

_STATUS = {"not_authorised": 403, "rate_limited": 429, "invalid": 422, "unknown": 404}


@dataclass
class ApiContext:
    """What the routes use: the configuration, the live state, the bus, the metrics."""

    config: ApiSection
    state: LiveState
    gateway: BusGateway
    metrics: SiteMetrics
    policy: Policy
    sessions: Sessions
    tls: bool = False
    history: str | None = None
    """The site's history file (None: the site records none)."""
    streams: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    _tokens: dict[bytes, Principal] = field(default_factory=dict)

    def count(self, kind: str) -> None:
        """Count an error of ``kind`` (exported as ``vpp_api_errors{where="http"}``)."""
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def by_token(self, token: str) -> Principal | None:
        """The principal a bearer token proves (verified once, then remembered)."""
        digest = hashlib.sha256(token.encode()).digest()
        who = self._tokens.get(digest)
        if who is None:
            who = authenticate(self.config.users, token=token)
            if who is None:
                return None
            if len(self._tokens) >= _TOKEN_CACHE:
                self._tokens.pop(next(iter(self._tokens)))
            self._tokens[digest] = who
        return who


# ---- request bodies ----


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Login(_Body):
    user: str = Field(max_length=200)
    password: str = Field(max_length=1000)


class Power(_Body):
    kw: float = Field(allow_inf_nan=False, description="base power, kW, discharge positive")


class ControlBody(_Body):
    action: Literal["enable", "disable", "reset_alarms", "emergency_stop"]


class Participation(_Body):
    p_max_kw: float = Field(ge=0, allow_inf_nan=False,
                            description="the unit's share of the frequency response at full "
                            "activation, kW")  # fmt: skip


class Target(_Body):
    kw: float | None = Field(allow_inf_nan=False, description="campus target, kW; null: follow "
                             "the market schedule")  # fmt: skip
    strategy: Literal["proportional", "balanced", "priority"] | None = None


class CampusScheduleBody(_Body):
    start: float = Field(allow_inf_nan=False, description="UNIX s of the first block")
    block_s: float = Field(default=900.0, gt=0, allow_inf_nan=False)
    kw: list[float] = Field(min_length=1, description="target per block, kW")


class CommandBody(_Body):
    params: dict[str, Any] = Field(default_factory=dict)


async def principal(request: Request) -> Principal:
    """The authenticated user of a request (a FastAPI dependency); 401 when none."""
    ctx: ApiContext = request.app.state.ctx
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        who = ctx.by_token(auth[7:].strip())
    else:
        sid = request.cookies.get(COOKIE)
        who = ctx.sessions.get(sid) if sid else None
        if who is not None and request.method not in ("GET", "HEAD") \
                and request.headers.get("x-vpp") != "1":  # fmt: skip
            ctx.count("csrf")
            raise HTTPException(403, "a cookie-authenticated change needs the X-VPP header")
    if who is None:
        ctx.count("unauthenticated")
        raise HTTPException(401, "log in, or send Authorization: Bearer TOKEN",
                            headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    return who


Who = Annotated[Principal, Depends(principal)]


def create_app(ctx: ApiContext) -> FastAPI:
    """The FastAPI application over ``ctx``."""
    app = FastAPI(title="vpp", version=_version(),
                  description="The HTTP API of a running vpp site (docs/api.md).")  # fmt: skip
    app.state.ctx = ctx

    @app.middleware("http")
    async def timing(request: Request, call_next: Callable[[Request], Awaitable[Response]]
                     ) -> Response:  # fmt: skip
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "other")
        ctx.metrics.request_s.labels(path).observe(time.perf_counter() - t0)
        return response

    async def run(who: Principal, server: str, name: str, params: dict[str, Any]) -> Any:
        try:
            ack = await ctx.gateway.command(who.identity, server, name, params)
        except CommandTimeoutError as exc:
            ctx.count("timeout")
            raise HTTPException(504, f"{server} did not answer {name}: {exc}") from exc
        except MessageError as exc:
            ctx.count("key")
            raise HTTPException(503, str(exc)) from exc
        if not ack.ok:
            raise HTTPException(_STATUS.get(ack.refused or "", 502),
                                {"error": ack.error, "refused": ack.refused or "failed"})
        return ack.result

    def field_of(unit: str) -> str:
        try:
            return ctx.gateway.server_of("field", unit)
        except CommandError as exc:
            raise HTTPException(404, str(exc)) from exc

    # ---- session ----

    @app.post("/api/login", tags=["session"])
    async def login(body: Login, response: Response) -> dict[str, Any]:
        """Log in with a user name and password; sets the session cookie."""
        who = await asyncio.to_thread(authenticate, ctx.config.users, user=body.user,
                                      password=body.password)  # fmt: skip
        if who is None:
            ctx.count("login_failed")
            raise HTTPException(401, "wrong user or password")
        _set_cookie(response, ctx, ctx.sessions.open(who))
        return _me(ctx, who)

    @app.get("/login", tags=["session"], include_in_schema=False)
    async def login_link(token: str) -> Response:
        """The link ``vpp run`` prints: a token into a session cookie, then the dashboard."""
        who = ctx.by_token(token)
        if who is None:
            ctx.count("login_failed")
            return JSONResponse({"detail": "unknown token"}, status_code=401)
        response = RedirectResponse("/", status_code=303)
        _set_cookie(response, ctx, ctx.sessions.open(who))
        return response

    @app.post("/api/logout", tags=["session"])
    async def logout(request: Request, response: Response, who: Who) -> dict[str, bool]:
        """End the session."""
        sid = request.cookies.get(COOKIE)
        if sid:
            ctx.sessions.close(sid)
        response.delete_cookie(COOKIE)
        return {"ok": True}

    @app.get("/api/me", tags=["session"])
    async def me(who: Who) -> dict[str, Any]:
        """Who you are, the bus identity you act as, and the commands it may send."""
        return _me(ctx, who)

    # ---- reads from the live state ----

    @app.get("/api/status", tags=["site"])
    async def status(who: Who) -> dict[str, Any]:
        """The whole site now: grid, fleet, units, dispatch, processes, alarms."""
        return ctx.state.snapshot()

    @app.get("/api/series", tags=["site"])
    async def series(who: Who, window_s: float = 300.0) -> dict[str, Any]:
        """Frequency (t, Hz, ROCOF) and fleet power (t, kW, target kW) of the last seconds."""
        return ctx.state.series(min(max(window_s, 1.0), ctx.config.history_window_s))

    @app.get("/api/timeline", tags=["site"])
    async def timeline(who: Who, since: int = 0) -> list[dict[str, Any]]:
        """Events (frequency events, compliance, commands, processes, alarms) after ``since``."""
        return ctx.state.events_since(since)

    @app.get("/api/units", tags=["field"])
    async def units(who: Who) -> list[dict[str, Any]]:
        """Every unit: telemetry, last decision, online."""
        return list(ctx.state.snapshot()["units"])

    @app.get("/api/units/{unit}", tags=["field"])
    async def unit(unit: str, who: Who) -> dict[str, Any]:
        """One unit: health (online, safety), telemetry, power, its controller's view."""
        u = ctx.state.units.get(unit)
        if u is None:
            raise HTTPException(404, f"no unit {unit!r} at this site")
        live = await run(who, field_of(unit), "status", {})
        return {**u.as_dict(ctx.state.online(u, time.time())),
                "controller": live.get(unit) if isinstance(live, dict) else None}

    @app.get("/api/units/{unit}/safety", tags=["field"])
    async def safety(unit: str, who: Who, limit: int = 100) -> Any:
        """The unit's safety violations, newest last."""
        return await run(who, field_of(unit), "safety_history", {"unit": unit, "limit": limit})

    @app.get("/api/campus/dispatch", tags=["campus"])
    async def dispatch(who: Who) -> dict[str, Any]:
        """The campus's last dispatch: target, source, setpoints, shortfall."""
        return ctx.state.dispatch

    @app.get("/api/campus/nodes", tags=["campus"])
    async def nodes(who: Who) -> Any:
        """Totals per node of the location hierarchy (the campus's ``fleet``)."""
        return await run(who, "campus", "fleet", {"levels": ["node"]})

    @app.get("/api/campus/capacity", tags=["campus"])
    async def capacity(who: Who) -> Any:
        """Available capacity and energy per level of the location hierarchy."""
        return await run(who, "campus", "fleet", {})

    @app.get("/api/grid", tags=["grid"])
    async def grid(who: Who) -> Any:
        """The grid service's status (obligation, shares, the event under way)."""
        return await run(who, "grid", "status", {})

    @app.get("/api/events", tags=["grid"])
    async def events(who: Who, limit: int = 20) -> Any:
        """Finished frequency events with their compliance verdicts."""
        return await run(who, "grid", "events", {"limit": limit})

    @app.get("/api/compliance", tags=["grid"])
    async def compliance(who: Who) -> list[dict[str, Any]]:
        """The compliance reports of recent events (as the grid service published them)."""
        return list(ctx.state.compliance)

    @app.get("/api/market", tags=["market"])
    async def market(who: Who) -> Any:
        """The market gateway's status: schedule, delivery."""
        return await run(who, "market", "status", {})

    @app.get("/api/market/bids", tags=["market"])
    async def bids(who: Who) -> list[dict[str, Any]]:
        """Recent bids."""
        return list(ctx.state.bids)

    @app.get("/api/market/results", tags=["market"])
    async def results(who: Who) -> list[dict[str, Any]]:
        """Recent awards (clearing results)."""
        return list(ctx.state.results)

    # ---- commands ----

    @app.post("/api/units/{unit}/power", tags=["field"])
    async def set_power(unit: str, body: Power, who: Who) -> Any:
        """Set the unit's base power (the frequency response adds to it)."""
        return await run(who, field_of(unit), "set_power", {"unit": unit, "kw": body.kw})

    @app.post("/api/units/{unit}/control", tags=["field"])
    async def control(unit: str, body: ControlBody, who: Who) -> Any:
        """Enable, disable, reset alarms, or stop at once."""
        return await run(who, field_of(unit), "control", {"unit": unit, "action": body.action})

    @app.post("/api/units/{unit}/participation", tags=["field"])
    async def participation(unit: str, body: Participation, who: Who) -> Any:
        """The unit's share of the frequency response."""
        return await run(who, field_of(unit), "set_participation",
                         {"unit": unit, "p_max_kw": body.p_max_kw})  # fmt: skip

    @app.post("/api/campus/target", tags=["campus"])
    async def target(body: Target, who: Who) -> Any:
        """A fixed campus target (or null to follow the market schedule)."""
        params: dict[str, Any] = {"kw": body.kw}
        if body.strategy is not None:
            params["strategy"] = body.strategy
        return await run(who, "campus", "set_target", params)

    @app.post("/api/campus/schedule", tags=["campus"])
    async def schedule(body: CampusScheduleBody, who: Who) -> Any:
        """A campus schedule: a target per block from ``start``."""
        return await run(who, "campus", "set_schedule", body.model_dump())

    @app.post("/api/market/run", tags=["market"])
    async def market_run(who: Who) -> Any:
        """Bid, clear and schedule the next delivery now."""
        return await run(who, "market", "run", {})

    @app.post("/api/commands/{server}/{name}", tags=["commands"])
    async def command(server: str, name: str, body: CommandBody, who: Who) -> Any:
        """Any command of any process of the site (``server``: a field controller id,
        campus, grid or market), as the models in docs/orchestrator.md define them."""
        if server not in ctx.gateway.topo.commands:
            raise HTTPException(404, f"no process {server!r} takes commands here")
        return await run(who, server, name, body.params)

    # ---- live stream, metrics, dashboard ----

    @app.get("/api/stream", tags=["site"])
    async def stream(request: Request, who: Who, since: int | None = None) -> Response:
        """Server-sent events: the live state every ``stream_interval_s`` with the
        timeline entries since the last update."""
        if ctx.streams >= MAX_STREAMS:
            ctx.count("streams_full")
            raise HTTPException(503, f"at most {MAX_STREAMS} live streams")
        return StreamingResponse(_stream(ctx, request, since), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})  # fmt: skip

    @app.get("/metrics", tags=["metrics"], include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus metrics (text format)."""
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if ctx.history is not None:
        from vpp.orchestrator.api.history_routes import history_router

        app.include_router(history_router(ctx.history, ctx.state.site.site.name))

    static = resources.files("vpp.orchestrator.api") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return Response((static / "index.html").read_bytes(), media_type="text/html")

    return app


async def _stream(ctx: ApiContext, request: Request, since: int | None) -> AsyncIterator[str]:
    ctx.streams += 1
    period = ctx.config.stream_interval_s
    loop = asyncio.get_running_loop()
    # Absolute deadlines: the time spent making an update does not stretch the period.
    due = loop.time()
    try:
        seq = ctx.state.last_seq() if since is None else since
        while not await request.is_disconnected():
            snap = ctx.state.snapshot()
            snap["timeline"] = ctx.state.events_since(seq)
            seq = snap["last_seq"]
            yield f"data: {json.dumps(snap, separators=(',', ':'))}\n\n"
            due = max(due + period, loop.time())
            await asyncio.sleep(due - loop.time())
    finally:
        ctx.streams -= 1


def _set_cookie(response: Response, ctx: ApiContext, sid: str) -> None:
    response.set_cookie(COOKIE, sid, max_age=int(ctx.config.session_ttl_s), httponly=True,
                        samesite="strict", secure=ctx.tls)  # fmt: skip


def _me(ctx: ApiContext, who: Principal) -> dict[str, Any]:
    # What the dashboard offers: a command is shown when the identity may send it to
    # some process of its kind (a grant narrowed to units is checked per unit by the
    # process itself).
    servers: dict[str, list[str]] = {"field": [f"field:{f}" for f in ctx.state.fields()]}
    allowed: dict[str, list[str]] = {}
    for kind, models in COMMANDS.items():
        names = servers.get(kind, [f"{kind}:{kind}"])
        allowed[kind] = [c for c in models if any(
            ctx.policy.decide(who.identity, c, srv, None).ok for srv in names)]  # fmt: skip
    return {"user": who.user, "identity": who.identity,
            "roles": list(ctx.policy.roles_of(who.identity)), "allowed": allowed}


def _version() -> str:
    from vpp import __version__

    return __version__

