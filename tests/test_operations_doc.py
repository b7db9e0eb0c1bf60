"""docs/operations.md and deploy/ stay true: every ``vpp`` command the page shows, and
the command line of the systemd unit, parse with the real argument parser; the files the
page installs exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from vpp.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "operations.md"


def shown_commands() -> list[str]:
    """Each ``vpp ...`` command in the page's shell blocks, comments removed."""
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.S)
    out = []
    for block in blocks:
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith(("vpp ", ".venv/bin/vpp ")):
                out.append(line)
    return out


def test_the_page_shows_commands() -> None:
    assert len(shown_commands()) >= 6


@pytest.mark.parametrize("line", shown_commands())
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
