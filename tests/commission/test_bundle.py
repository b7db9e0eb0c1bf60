"""The offline bundle (issue 14): ``scripts/bundle`` collects the project's wheel and a
wheel of every dependency for a target; its ``install.sh`` installs them with the
network switched off (a network namespace of its own, where the machine allows it)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ELF_MACHINE = {"x86_64": 0x3E, "aarch64": 0xB7}


def _bundle(arch: str, out: Path) -> Path:
    proc = subprocess.run(["bash", "scripts/bundle", arch, str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=1500,
                          env={**os.environ, "VPP_PYTHON": sys.executable})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (tarball,) = out.glob(f"vpp-bundle-*-{arch}.tar.gz")
    return out / tarball.name.removesuffix(".tar.gz")


def _core_machine(wheel: Path) -> int:
    """The ELF machine of the wheel's compiled core."""
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.startswith("vpp/_core") and n.endswith(".so")]
        head = z.read(name)[:20]
    assert head[:4] == b"\x7fELF"
    return int(struct.unpack_from("<H", head, 18)[0])


def _offline() -> list[str]:
    """A prefix that runs a command without any network: a new network namespace
    (root or unprivileged user namespaces); otherwise nothing, and pip is kept off the
    network by --no-index alone (install.sh passes it)."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


@pytest.mark.timeout(1500)
def test_the_bundle_installs_and_runs_without_a_network(tmp_path: Path) -> None:
    arch = os.uname().machine
    bundle = _bundle(arch, tmp_path / "out")
    wheels = sorted(p.name for p in (bundle / "wheels").iterdir())
    (vpp_wheel,) = [w for w in wheels if w.startswith("vpp-")]
    assert _core_machine(bundle / "wheels" / vpp_wheel) == ELF_MACHINE[arch]
    for dep in ("numpy", "pydantic", "pyzmq", "pymodbus", "pip"):
        assert any(w.lower().startswith(dep + "-") for w in wheels), (dep, wheels)
    prefix = tmp_path / "venv"
    env = {**os.environ, "PYTHON": os.path.realpath(sys.executable), "PIP_NO_INDEX": "1",
           "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}  # fmt: skip
    env.pop("VIRTUAL_ENV", None)
    env.pop("PIP_FIND_LINKS", None)  # only the bundle's wheels
    install = subprocess.run([*_offline(), "sh", str(bundle / "install.sh"), str(prefix)],
                             capture_output=True, text=True, timeout=600, env=env)  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    assert install.stdout.strip().startswith("vpp ")
    check = subprocess.run(
        [*_offline(), str(prefix / "bin" / "python"), "-c",
         "import vpp, vpp._core, vpp.orchestrator.field.controller, vpp.commission.suite;"
         "print(vpp.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr[-2000:]
    assert Path(check.stdout.strip()).is_relative_to(prefix)
    for unit_file in ("vpp.service", "vpp.env", "journald-vpp.conf"):
        assert (bundle / unit_file).is_file()


@pytest.mark.timeout(1500)
def test_the_aarch64_bundle_has_an_arm_core_and_every_dependency_for_arm(
    tmp_path: Path,
) -> None:
    bundle = _bundle("aarch64", tmp_path / "out")
    wheels = sorted((bundle / "wheels").iterdir())
    (vpp_wheel,) = [w for w in wheels if w.name.startswith("vpp-")]
    assert _core_machine(vpp_wheel) == ELF_MACHINE["aarch64"]
    for w in wheels:  # each wheel is pure Python or built for aarch64
        tag = w.name.removesuffix(".whl").rsplit("-", 1)[-1]
        assert tag == "any" or tag.endswith("aarch64"), w.name
    # pip resolves the whole installation for an aarch64 CPython 3.11 from the bundle
    # alone (what install.sh does on the RTU), without the network.
    platforms = [a for v in range(36, 16, -1) for a in ("--platform", f"manylinux_2_{v}_aarch64")]
    resolve = subprocess.run(
        [*_offline(), sys.executable, "-m", "pip", "install", "--dry-run", "--no-index",
         "--find-links", str(bundle / "wheels"), "--only-binary=:all:", *platforms,
         "--platform", "manylinux2014_aarch64", "--python-version", "3.11",
         "--implementation", "cp", "--target", str(tmp_path / "t"), "vpp"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resolve.returncode == 0, resolve.stderr[-3000:]
    assert "Would install" in resolve.stdout and "vpp-" in resolve.stdout
    # Installed (for aarch64, from the bundle alone) and run by Debian's own arm64
    # CPython 3.11 under qemu-user: the compiled core decodes and steps a frame.
    site = tmp_path / "site"
    install = subprocess.run(
        [*_offline(), sys.executable, "-m", "pip", "install", "-q", "--no-index",
         "--find-links", str(bundle / "wheels"), "--only-binary=:all:", *platforms,
         "--platform", "manylinux2014_aarch64", "--python-version", "3.11",
         "--implementation", "cp", "--target", str(site), "vpp"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    root = subprocess.run(["bash", "scripts/arm-python"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert root.returncode == 0, root.stderr[-2000:]
    py = root.stdout.strip()
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import platform, vpp, vpp._core as core\n"
        "from vpp.core import Pipeline\n"
        "from vpp.sim.pmu import PmuServer\n"
        "import vpp.orchestrator.field.controller\n"
        "pmu = PmuServer(port=0, rate=50)\n"
        "p = Pipeline(p_max_kw=500.0)\n"
        "from vpp import c37118\n"
        "p.process(c37118.encode(pmu.config))\n"
        "for k in range(50): p.process(pmu.data_frame(k), replay=True)\n"
        "print(platform.machine(), hex(core.crc_ccitt(b'123456789')), p.stats()['decisions'])\n"
    )
    arm = subprocess.run(["qemu-aarch64", "-L", py, f"{py}/usr/bin/python3.11", "-c", script,
                          str(site)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert arm.returncode == 0, arm.stderr[-3000:]
    assert arm.stdout.split() == ["aarch64", "0x29b1", "50"], arm.stdout
