"""The udp_loopback CAN bus against real peers: buses of this host, and senders from a
non-loopback address of this host (the nearest thing to another host a test can be)."""

from __future__ import annotations

from collections.abc import Iterator

import can
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.net import free_udp_port, non_loopback_ipv4, send_can
from vpp.drivers.can_bus import (
    ForeignFrameError,
    UdpLoopbackBus,
    is_loopback_source,
    open_bus,
)
from vpp.drivers.factory import ProtocolFactory
from vpp.errors import ConfigError

GROUP = "239.74.163.2"
FOREIGN = non_loopback_ipv4()
needs_foreign = pytest.mark.skipif(
    FOREIGN is None,
    reason="this host has no non-loopback IPv4 address to send from (a 127.x source is "
    "this host, which the bus accepts by design)",
)


@pytest.fixture
def pair() -> Iterator[tuple[UdpLoopbackBus, UdpLoopbackBus]]:
    """A receiving and a sending bus on one group and a port the system chose."""
    rx = UdpLoopbackBus(GROUP, port=0)
    try:
        tx = UdpLoopbackBus(GROUP, port=rx.port)
        try:
            yield rx, tx
        finally:
            tx.shutdown()
    finally:
        rx.shutdown()


def frame(can_id: int = 0x410, data: bytes = b"\x78" * 8) -> can.Message:
    return can.Message(arbitration_id=can_id, data=data, is_extended_id=False)


def same(a: can.Message, b: can.Message) -> bool:
    return (a.arbitration_id, a.is_extended_id, bytes(a.data), a.dlc) == (
        b.arbitration_id, b.is_extended_id, bytes(b.data), b.dlc
    )  # fmt: skip


frames = st.builds(
    lambda ext, ident, data: can.Message(
        arbitration_id=ident if ext else ident & 0x7FF, data=data, is_extended_id=ext
    ),
    st.booleans(),
    st.integers(0, 0x1FFFFFFF),
    st.binary(max_size=8),
)


@needs_foreign
def test_frames_of_this_host_arrive_exactly_and_others_are_refused(
    pair: tuple[UdpLoopbackBus, UdpLoopbackBus],
) -> None:
    rx, tx = pair
    assert FOREIGN is not None

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
    @given(frames)
    def check(msg: can.Message) -> None:
        tx.send(msg)
        got = rx.recv(timeout=2.0)
        assert got is not None and same(got, msg)
        # The same bytes from the host's other address, on the same group and path.
        assert send_can(msg, (GROUP, rx.port), source=FOREIGN)
        with pytest.raises(ForeignFrameError) as info:
            rx.recv(timeout=2.0)
        assert info.value.source == FOREIGN
        assert isinstance(info.value, can.CanOperationError)

    check()
    # The refusals consumed their datagrams: the bus goes on with the next frame.
    tx.send(frame())
    got = rx.recv(timeout=2.0)
    assert got is not None and same(got, frame())


@needs_foreign
def test_unicast_to_the_port_never_arrives_where_udp_multicast_takes_it() -> None:
    assert FOREIGN is not None
    # python-can's bus, as the default site used it, for comparison.
    stock_port = free_udp_port()
    stock = can.Bus(interface="udp_multicast", channel=GROUP, port=stock_port, hop_limit=0)
    rx = UdpLoopbackBus(GROUP, port=0)
    try:
        for dest in (FOREIGN, "127.0.0.1"):
            assert send_can(frame(), (dest, rx.port), source=FOREIGN)
            assert send_can(frame(), (dest, stock_port), source=FOREIGN)
        # The group-bound socket does not match a unicast destination: nothing arrives.
        assert rx.recv(timeout=0.3) is None
        # The stock bus binds every address and takes both (the reported attack).
        received = [stock.recv(timeout=1.0) for _ in range(2)]
        assert all(m is not None and same(m, frame()) for m in received)
    finally:
        stock.shutdown()
        rx.shutdown()


@needs_foreign
def test_the_group_on_another_interface_never_arrives(
    pair: tuple[UdpLoopbackBus, UdpLoopbackBus],
) -> None:
    # Multicast out of the non-loopback interface (TTL 1: as a LAN peer's would come in);
    # the host's own copy is delivered to members on that interface, and the bus has
    # joined only on loopback, with IP_MULTICAST_ALL off.
    rx, tx = pair
    assert FOREIGN is not None
    if not send_can(frame(), (GROUP, rx.port), source=FOREIGN, via=FOREIGN, ttl=1):
        pytest.skip("this host cannot send multicast out of its other interface")
    assert rx.recv(timeout=0.3) is None
    tx.send(frame(0x420))
    got = rx.recv(timeout=2.0)
    assert got is not None and got.arbitration_id == 0x420


@given(st.ip_addresses(v=4))
def test_only_loopback_sources_count_as_this_host(addr: object) -> None:
    assert is_loopback_source(str(addr)) == str(addr).startswith("127.")


def test_bad_settings_are_refused_before_a_socket_opens() -> None:
    factory = ProtocolFactory()
    with pytest.raises(ConfigError) as info:
        factory.create("can_bms", {"interface": "udp_loopback", "channel": "10.0.0.1"})
    assert info.value.field == "channel"
    with pytest.raises(ConfigError) as info:
        factory.create("can_bms", {"interface": "udp_loopback", "channel": GROUP,
                                   "bus_options": {"port": 0, "hop_limit": 0}})  # fmt: skip
    assert info.value.field == "bus_options" and "hop_limit" in str(info.value)
    with pytest.raises(ValueError, match="hop_limit"):
        open_bus("udp_loopback", GROUP, {"hop_limit": 0})
    with pytest.raises(ValueError, match="IPv4 multicast"):
        UdpLoopbackBus("ff15::1")
    with pytest.raises(ValueError, match="port"):
        UdpLoopbackBus(GROUP, port=70000)
    with pytest.raises(ValueError):
        open_bus("no-such-interface", "x", {})
