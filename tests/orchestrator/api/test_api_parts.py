"""The API's parts on their own: credentials, sessions, the live state's bounds, the port
check of the launcher."""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import shutil
import socket
import ssl
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from vpp.config import load
from vpp.errors import ConfigError
from vpp.orchestrator.api.config import ApiSection, ApiUser
from vpp.orchestrator.api.credentials import (
    MAX_SESSIONS,
    Principal,
    Sessions,
    authenticate,
    hash_secret,
    verify_secret,
)
from vpp.orchestrator.api.service import ApiServer
from vpp.orchestrator.api.state import TIMELINE, LiveState
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.topology import Topology
from vpp.orchestrator.launcher import Launcher

# scrypt is slow on purpose; a few examples each are enough to show the rule.
secrets_ = st.text(min_size=0, max_size=40)


@settings(max_examples=8, deadline=None)
@given(secrets_, secrets_)
def test_a_hash_verifies_its_secret_and_no_other(secret: str, other: str) -> None:
    h = hash_secret(secret)
    assert verify_secret(secret, h)
    assert verify_secret(other, h) == (other == secret)


@pytest.mark.parametrize("bad", ["", "plain", "scrypt$1$2$3$salt", "bcrypt$1$2$3$a$b",
                                 "scrypt$x$8$1$AAAA$BBBB"])  # fmt: skip
def test_malformed_hashes_verify_nothing_and_are_refused_in_the_config(bad: str) -> None:
    assert not verify_secret("anything", bad)
    with pytest.raises(ValidationError):
        ApiUser(identity="operator", password_hash=bad)


def test_a_user_needs_a_credential_and_tls_needs_both_files() -> None:
    with pytest.raises(ValidationError):
        ApiUser(identity="operator")
    with pytest.raises(ValidationError):
        ApiSection(tls_cert="cert.pem")


def test_authenticate_by_password_or_token() -> None:
    users = {"ops": ApiUser(identity="operator", password_hash=hash_secret("pw"),
                            token_hash=hash_secret("tok"))}  # fmt: skip
    assert authenticate(users, user="ops", password="pw") == Principal("ops", "operator")
    assert authenticate(users, token="tok") == Principal("ops", "operator")
    assert authenticate(users, user="ops", password="tok") is None
    assert authenticate(users, user="nobody", password="pw") is None
    assert authenticate(users, token="pw") is None
    assert authenticate(users) is None


def test_sessions_expire_and_stay_bounded() -> None:
    now = [0.0]
    sessions = Sessions(10.0, clock=lambda: now[0])
    who = Principal("ops", "operator")
    sid = sessions.open(who)
    assert sessions.get(sid) == who
    now[0] = 10.0
    assert sessions.get(sid) is None
    first = sessions.open(who)
    for _ in range(MAX_SESSIONS + 50):
        sessions.open(who)
    assert len(sessions._by_id) <= MAX_SESSIONS
    assert sessions.get(first) is None  # the oldest went first
    last = sessions.open(who)
    sessions.close(last)
    assert sessions.get(last) is None


def _telemetry(unit: str, p: float) -> s.Message:
    body = s.Telemetry(unit=unit, p_kw=p, soc_pct=50.0, temp_c=25.0,
                       limits=s.Limits(p_min_kw=-500.0, p_max_kw=500.0))  # fmt: skip
    return s.make(body, "field-a")


messages = st.lists(st.one_of(
    st.builds(lambda t, hz: s.make(s.Frequency(hz=hz, band="normal", t=t), "field-a"),
              st.floats(0, 5000), st.floats(45, 55)),
    st.builds(lambda k, sev: s.make(s.Event(kind=k, severity=sev), "grid"),
              st.sampled_from(["command", "process", "frequency_event", "dispatch", "bid",
                               "compliance", "other"]),
              st.sampled_from(["info", "warning", "alarm"])),
    st.builds(_telemetry, st.sampled_from(["bess-1", "bess-2", "nobody"]), st.floats(-500, 500)),
), max_size=1500)  # fmt: skip


@settings(max_examples=30, deadline=None)
@given(messages)
def test_the_live_state_stays_bounded_whatever_arrives(msgs: list[s.Message]) -> None:
    clock = [0.0]
    state = LiveState(load(), window_s=60.0, series_hz=10.0, clock=lambda: clock[0])
    for i, m in enumerate(msgs):
        clock[0] = i * 0.01
        state.update(m)
    assert len(state.timeline) <= TIMELINE
    assert len(state.bids) <= 200 and len(state.results) <= 200
    # The frequency series: at most one point per 0.1 s over a minute (plus the edge).
    pts = state.frequency.points
    assert len(pts) <= 60 * 10 + 1
    assert all(b[0] - a[0] >= 0.1 - 1e-9 for a, b in zip(pts, list(pts)[1:], strict=False))
    assert set(state.units) == {"bess-1", "bess-2", "bess-3"}  # no unit made up
    seqs = [e["seq"] for e in state.timeline]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    snap = state.snapshot()
    assert snap["last_seq"] == (seqs[-1] if seqs else 0)


def test_a_port_in_use_is_a_one_line_config_error(tmp_path: object) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        site = load()
        site = site.model_copy(update={"api": site.api.model_copy(update={"port": port})})
        launcher = Launcher(site)
        with pytest.raises(ConfigError) as info:
            launcher._prepare_api(tmp_path)  # type: ignore[arg-type]
        assert f"127.0.0.1:{port}" in str(info.value) and "\n" not in str(info.value)
        assert info.value.field == "api.port"


def test_vpp_api_hash_makes_what_the_config_takes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from vpp.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    assert main(["api", "hash", "--stdin"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("password_hash: ")
    user = ApiUser(identity="viewer", password_hash=line.split(": ", 1)[1])
    assert authenticate({"v": user}, user="v", password="correct horse") == Principal("v", "viewer")
    assert main(["api", "hash", "--token"]) == 0
    out = capsys.readouterr()
    token = out.err.strip().rsplit(" ", 1)[1]
    user = ApiUser(identity="operator", token_hash=out.out.strip().split(": ", 1)[1])
    assert authenticate({"o": user}, token=token) == Principal("o", "operator")


def _self_signed(d: Path) -> tuple[Path, Path]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(
            ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = d / "api.pem", d / "api.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_file, key_file


def test_with_tls_the_api_serves_https_only() -> None:
    d = Path(tempfile.mkdtemp(prefix="vpptls-", dir="/tmp"))
    try:
        cert, key = _self_signed(d)
        site = load()
        users = {"ops": ApiUser(identity="operator", token_hash=hash_secret("tok"))}
        api = site.api.model_copy(update={"port": 0, "tls_cert": str(cert), "tls_key": str(key),
                                          "users": users})  # fmt: skip
        site = site.model_copy(update={"api": api})
        topo = Topology.build(site.bus, [f.id for f in site.field], d, site.security,
                              make_keys=True)  # fmt: skip

        def get(url: str, ctx: ssl.SSLContext | None) -> int:
            req = urllib.request.Request(url, headers={"Authorization": "Bearer tok"})
            with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
                return int(resp.status)

        async def go() -> None:
            broker = topo.broker()
            broker.start()
            server = ApiServer(site, topo)
            server.bind()
            stop = asyncio.Event()
            task = asyncio.create_task(server.run(stop))
            try:
                await asyncio.sleep(0.5)
                trusted = ssl.create_default_context(cafile=str(cert))
                url = f"https://127.0.0.1:{server.port}/api/status"
                assert await asyncio.to_thread(get, url, trusted) == 200
                # Plain HTTP gets no answer (the connection drops, or no status line).
                with pytest.raises((OSError, http.client.HTTPException)):
                    await asyncio.to_thread(get, url.replace("https", "http"), None)
                with pytest.raises(urllib.error.URLError):  # nor an untrusting client
                    await asyncio.to_thread(get, url, ssl.create_default_context())
            finally:
                stop.set()
                await asyncio.wait_for(task, 10)
                await asyncio.to_thread(broker.stop)

        asyncio.run(go())
    finally:
        shutil.rmtree(d, ignore_errors=True)
