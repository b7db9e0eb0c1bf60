"""Run a whole plan: load it, run each case against the target, evaluate, write the
outputs (docs/hil.md)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from vpp.errors import ConfigError
from vpp.hil.agc_target import run_agc_case
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


def run_plan(path: Path, out_dir: Path | None = None) -> PlanRun:
    """Run the plan at ``path``, writing everything in ``out_dir`` (created; default
    ``hil-out/PLAN-NAME``). A bad plan is a ConfigError before anything runs."""
    plan, procedures = load_plan(path)
    profiles: list[ProfileFunction] = []
    for i, case in enumerate(plan.cases):
        # Recordings are read now, once: a missing or bad file fails before anything runs.
        try:
            profiles.append(ProfileFunction(case.profile, path.parent))
        except ConfigError as exc:
            raise config_error(f"plan {path}: field 'cases.{i}.profile': {exc}", "profile") from exc
    out_dir = out_dir if out_dir is not None else Path("hil-out") / plan.name
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    outcomes: list[CaseOutcome] = []
    for case, fn in zip(plan.cases, profiles, strict=True):
        proc = procedures[case.name]
        if plan.target == "device":
            record = asyncio.run(run_device_case(plan, case, fn, path.parent))
        elif proc.kind == "agc":
            record = asyncio.run(run_agc_case(plan, case, proc, fn))
        else:
            record = asyncio.run(run_case(plan, case, proc, fn))
        outcome = CaseOutcome(record, evaluate(proc, case, record), proc)
        write_case_files(out_dir, outcome)
        outcomes.append(outcome)
    html, junit = out_dir / "report.html", out_dir / "junit.xml"
    write_html(html, plan, outcomes)
    write_junit(junit, plan, outcomes)
    return PlanRun(plan, outcomes, html, junit, time.monotonic() - start)
