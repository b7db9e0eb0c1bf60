"""The API's history routes: the questions of ``vpp history`` and ``vpp report`` over HTTP.

They read the site's SQLite history (``history.path``) read-only through
:class:`vpp.reports.query.HistoryReader`, in a worker thread so that a long query does
not hold up the live routes. Times are ISO 8601 or UNIX seconds; ``format=csv`` gives
the same columns as ``vpp history ... --csv``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, Response

from vpp.errors import HistoryError
from vpp.orchestrator.api.app import Who
from vpp.reports.query import (
    COMMAND_COLUMNS,
    EVENT_COLUMNS,
    FLEET_COLUMNS,
    UNIT_COLUMNS,
    HistoryReader,
)
from vpp.reports.tables import to_csv

__all__ = ["history_router"]

T = TypeVar("T")
Format = Literal["json", "csv"]


def history_router(path: str, site_name: str = "") -> APIRouter:
    """The routes over the history file at ``path``."""
    router = APIRouter(prefix="/api/history", tags=["history"])

    async def ask(question: Callable[[HistoryReader], T]) -> T:
        def run() -> T:
            with HistoryReader(path) as reader:
                return question(reader)

        try:
            return await asyncio.to_thread(run)
        except HistoryError as exc:
            # What the history does not hold (no file, an empty one, a number or unit it
            # lacks) names the history; a range that cannot be read names nothing: the
            # request's fault.
            raise HTTPException(404 if exc.path else 400, str(exc)) from None

    @router.get("/events")
    async def events(who: Who, format: Format = "json") -> Response:
        """Frequency events: number, times, direction, extreme, verdict."""
        rows = await ask(lambda r: r.events())
        return _answer(rows, EVENT_COLUMNS, format, "events")

    @router.get("/events/{number}/report", response_class=HTMLResponse)
    async def report(number: int, who: Who) -> HTMLResponse:
        """The event's report (as ``vpp report event N``): plots and compliance table."""
        from vpp.reports.event_report import render
        from vpp.reports.response import event_response

        def build(reader: HistoryReader) -> str:
            return render(event_response(reader, number), history=path, site=site_name)

        return HTMLResponse(await ask(build))

    @router.get("/units/{unit}")
    async def unit(unit: str, who: Who, event: int | None = None, start: str | None = None,
                   end: str | None = None, format: Format = "json") -> Response:  # fmt: skip
        """What the unit did (decisions and telemetry) during event N or a time range."""
        rows = await ask(lambda r: r.unit_rows(unit, *r.closed_range(event=event, start=start,
                                                                       end=end)))
        return _answer(rows, UNIT_COLUMNS, format, f"{unit}")

    @router.get("/fleet")
    async def fleet(who: Who, event: int | None = None, start: str | None = None,
                    end: str | None = None, format: Format = "json") -> Response:  # fmt: skip
        """The fleet's totals during event N or a time range."""
        rows = await ask(lambda r: r.fleet_rows(*r.closed_range(event=event, start=start,
                                                                end=end)))
        return _answer(rows, FLEET_COLUMNS, format, "fleet")

    @router.get("/commands")
    async def commands(who: Who, start: str | None = None, end: str | None = None,
                       format: Format = "json") -> Response:  # fmt: skip
        """The audited commands in a time range (all when none is given)."""

        rows = await ask(lambda r: r.commands(*r.time_range(start=start, end=end)))
        return _answer(rows, COMMAND_COLUMNS, format, "commands")

    return router


def _answer(rows: list[dict[str, Any]], columns: Sequence[str], format: Format,
            name: str) -> Response:  # fmt: skip
    if format == "csv":
        return Response(to_csv(rows, columns), media_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="{name}.csv"'})  # fmt: skip
    return JSONResponse(rows)
