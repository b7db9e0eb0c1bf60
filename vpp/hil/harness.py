"""Run a whole plan: load it, run each case against the target, evaluate, write the
outputs (docs/hil.md)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from vpp.errors import ConfigError
from vpp.hil.criteria import evaluate
from vpp.hil.device import run_device_case
from vpp.hil.plan import Plan, load_plan
from vpp.hil.profiles import ProfileFunction
from vpp.hil.report import CaseOutcome, write_case_files, write_html, write_junit
from vpp.hil.runner import run_case
from vpp.validation import config_error

__all__ = ["PlanRun", "run_plan"]


@dataclass(frozen=True)
class PlanRun:
    """A finished run: the plan, each case's outcome, the report files and the time."""

    plan: Plan
    outcomes: list[CaseOutcome]
    html: Path
    junit: Path
    wall_s: float

    @property
    def passed(self) -> bool:
        """Every case passed."""
        return all(o.result.passed for o in self.outcomes)


def run_plan(path: Path, out_dir: Path) -> PlanRun:
    """Run the plan at ``path``, writing everything in ``out_dir`` (created). A bad plan
    is a ConfigError before anything runs."""
    plan, procedures = load_plan(path)
    for i, case in enumerate(plan.cases):
        # Recordings are read now: a missing or bad file fails before anything runs.
        try:
            ProfileFunction(case.profile, path.parent)
        except ConfigError as exc:
            raise config_error(f"plan {path}: field 'cases.{i}.profile': {exc}", "profile") from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    outcomes: list[CaseOutcome] = []
    for case in plan.cases:
        proc = procedures[case.name]
        if plan.target == "device":
            record = asyncio.run(run_device_case(plan, case, path.parent))
        else:
            record = asyncio.run(run_case(plan, case, proc, path.parent))
        outcome = CaseOutcome(record, evaluate(proc, case, record), proc)
        write_case_files(out_dir, outcome)
        outcomes.append(outcome)
    html, junit = out_dir / "report.html", out_dir / "junit.xml"
    write_html(html, plan, outcomes)
    write_junit(junit, plan, outcomes)
    return PlanRun(plan, outcomes, html, junit, time.monotonic() - start)
