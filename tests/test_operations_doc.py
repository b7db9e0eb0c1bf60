"""docs/operations.md and deploy/ stay true: every ``vpp`` command the page shows, and
the command line of the systemd unit, parse with the real argument parser; the files the
page installs exist."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vpp.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "operations.md"
DEPLOY = ROOT / "docs" / "deploy.md"


def shown_commands(doc: Path = DOC) -> list[str]:
    """Each ``vpp ...`` command in the page's shell blocks, comments removed."""
    blocks = re.findall(r"```sh\n(.*?)```", doc.read_text(), flags=re.S)
    out = []
    for block in blocks:
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith(("vpp ", ".venv/bin/vpp ", "/opt/vpp/.venv/bin/vpp ")):
                out.append(line)
    return out


def test_the_page_shows_commands() -> None:
    assert len(shown_commands()) >= 6
    assert len(shown_commands(DEPLOY)) >= 1


def test_the_deploy_page_runs_scripts_and_installs_files_that_exist() -> None:
    text = DEPLOY.read_text()
    scripts = re.findall(r"bash (scripts/[\w.-]+)", text)
    assert scripts and all((ROOT / s).is_file() for s in scripts), scripts
    for path in re.findall(r"install [^\n]*?((?:deploy|config)/[\w./-]+)", text):
        assert (ROOT / path).is_file(), path


@pytest.mark.parametrize("line", shown_commands() + shown_commands(DEPLOY))
def test_every_command_shown_parses(line: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = shlex.split(line)[1:]
    if argv == ["--version"]:
        with pytest.raises(SystemExit) as info:  # argparse's version action exits 0
            build_parser().parse_args(argv)
        assert info.value.code == 0 and capsys.readouterr().out.startswith("vpp ")
        return
    args = build_parser().parse_args(argv)  # exits (fails the test) on a bad command
    assert callable(args.func)


def test_the_unit_runs_a_command_that_parses() -> None:
    unit = (ROOT / "deploy" / "vpp.service").read_text()
    env = dict(
        line.split("=", 1)
        for line in (ROOT / "deploy" / "vpp.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    exec_start = re.search(r"^ExecStart=(.*)$", unit, flags=re.M)
    assert exec_start is not None
    line = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], exec_start.group(1))
    argv = shlex.split(line)
    assert argv[0] == "/opt/vpp/.venv/bin/vpp"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run" and args.only == env["VPP_ONLY"]
    assert args.log_level == env["VPP_LOG_LEVEL"]
    assert "RestartPreventExitStatus=2" in unit and "Restart=on-failure" in unit


def test_the_files_the_page_installs_exist() -> None:
    text = DOC.read_text()
    for path in re.findall(r"install [^\n]*?((?:deploy|config)/[\w./-]+)", text):
        assert (ROOT / path).is_file(), path


def test_the_unit_is_valid_hardened_and_watched(tmp_path: Path) -> None:
    # systemd's own checker on the unit as shipped (its ExecStart pointed at an
    # executable that exists here), and its exposure score, as docs/operations.md says.
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze (Debian: systemd) is part of the test setup"
    text = (ROOT / "deploy" / "vpp.service").read_text()
    unit = tmp_path / "vpp.service"
    unit.write_text(text.replace("/opt/vpp/.venv/bin/vpp", os.path.realpath(sys.executable)))
    verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    sec = subprocess.run([analyze, "security", "--offline=yes", str(unit)],
                         capture_output=True, text=True)  # fmt: skip
    score = re.search(r"Overall exposure level for vpp.service: ([\d.]+)", sec.stdout)
    assert score is not None and float(score.group(1)) <= 2.5, sec.stdout[-500:]
    settings = dict(line.split("=", 1) for line in text.splitlines()
                    if "=" in line and not line.startswith("#"))  # fmt: skip
    assert settings["Type"] == "notify" and settings["WatchdogSec"] == "10s"
    # The real-time loop's two privileges, and no other.
    assert settings["CapabilityBoundingSet"].split() == ["CAP_SYS_NICE", "CAP_IPC_LOCK"]
    assert settings["AmbientCapabilities"] == settings["CapabilityBoundingSet"]
    assert settings["ProtectSystem"] == "strict" and settings["NoNewPrivileges"] == "yes"
    journald = (ROOT / "deploy" / "journald-vpp.conf").read_text()
    assert "SystemMaxUse=" in journald and "[Journal]" in journald
