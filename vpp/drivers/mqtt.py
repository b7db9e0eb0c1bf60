"""MQTT driver: a device that publishes telemetry and takes commands through a broker.

Built on aiomqtt (asyncio over paho-mqtt 2). Topics and payloads are in
:mod:`vpp.drivers.mqtt_payload`. A session task owns the broker connection: it connects,
subscribes to the device's telemetry and ack topics, and handles every message; when the
broker goes away it reconnects after an exponential backoff with jitter and subscribes
again, for as long as the driver is open. The base class's per-call errors therefore do
not tear the session down; only :meth:`disconnect` and :meth:`close` end it.

A status read returns the latest telemetry (a :class:`StaleTelemetryError` if none came
within ``stale_after_s``); subscribers are called with every telemetry message as it
arrives. A command is published with a fresh id and completes when the ack with that id
comes back (``DeviceTimeoutError`` after ``timeout``; ``ProtocolError`` when the device
refuses it). Malformed telemetry and acks are logged and counted in the health figures
(``protocol`` for bytes that are not a JSON object, ``validation`` for wrong fields),
never raised into the session.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from vpp.aio import cancel_and_wait
from vpp.drivers.base import BaseProtocol, ConnectionState, ProtocolConfig, ProtocolHealth, Status
from vpp.drivers.errors import (
    DeviceOfflineError,
    DeviceTimeoutError,
    DriverError,
    ProtocolError,
    ValidationError,
)
from vpp.drivers.mqtt_config import MqttConfig, TrackingSSLContext
from vpp.drivers.mqtt_payload import PayloadError, Topics, decode_ack, decode_telemetry, encode

__all__ = [
    "COMMANDS",
    "MqttConfig",
    "MqttHealth",
    "MqttProtocol",
    "StaleTelemetryError",
]

log = logging.getLogger(__name__)

#: Commands and the params each needs (the simulated device takes the same).
COMMANDS: dict[str, tuple[str, ...]] = {
    "set_power": ("kw",),
    "set_reactive_power": ("kvar",),
    "set_mode": ("mode",),
    "enable": (),
    "disable": (),
    "emergency_stop": (),
}
# CONNACK codes that mean the credentials are wrong (MQTT 3.1.1: 4, 5; MQTT 5: 0x86, 0x87).
_AUTH_CODES = {4, 5, 0x86, 0x87}


class StaleTelemetryError(DeviceTimeoutError):
    """No telemetry arrived within ``stale_after_s`` (or none yet)."""


class MqttHealth(ProtocolHealth):
    """:class:`ProtocolHealth` plus the session's figures: ``reconnects`` (sessions after
    the first), ``telemetry`` (messages decoded) and ``late_acks`` (acks of no pending
    command, e.g. after its timeout)."""

    def __init__(self) -> None:
        #: The session's connection state while a session runs (None when none does).
        self.session: ConnectionState | None = None
        self._state = ConnectionState.DISCONNECTED
        super().__init__()
        self.reconnects = 0
        self.telemetry = 0
        self.late_acks = 0

    @property
    def state(self) -> ConnectionState:
        """The session's state while one runs: a failed call leaves the broker connection
        up, so the base class's view of it would be wrong."""
        return self.session if self.session is not None else self._state

    @state.setter
    def state(self, value: ConnectionState) -> None:
        self._state = value

    def snapshot(self) -> dict[str, Any]:
        """The base figures plus the MQTT ones."""
        out = super().snapshot()
        out.update(reconnects=self.reconnects, telemetry=self.telemetry, late_acks=self.late_acks)
        return out


class MqttProtocol(BaseProtocol):
    """A device behind an MQTT broker (see the module docstring).

    Status: the latest telemetry's values, plus ``age_s`` (seconds since it arrived).
    """

    Config: ClassVar[type[ProtocolConfig]] = MqttConfig
    commands: ClassVar[frozenset[str]] = frozenset(COMMANDS)

    def __init__(self, config: ProtocolConfig, *, name: str = "") -> None:
        """Keep the config; the session starts at :meth:`connect` or the first call."""
        super().__init__(config, name=name)
        assert isinstance(config, MqttConfig)
        self.cfg = config
        self.health: MqttHealth = MqttHealth()
        self.topics = Topics.of(config.prefix, config.device)
        #: (local receive time UNIX s, values) of the latest telemetry.
        self.latest: tuple[float, Status] | None = None
        self._pending: dict[str, asyncio.Future[str]] = {}
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._online = asyncio.Event()
        self._refused: DriverError | None = None
        self._last_error = ""
        self._stopping = False

    # --- transport ------------------------------------------------------------------------

    async def _connect(self) -> None:
        if self._task is None or self._task.done():
            self._refused = None
            self.health.session = ConnectionState.CONNECTING
            self._task = asyncio.create_task(self._session(), name=f"{self.name}-mqtt")
        waiter = asyncio.ensure_future(self._online.wait())
        try:
            # Short of the base's timeout, so that the error says why it failed.
            await asyncio.wait({waiter, self._task}, timeout=0.9 * self.cfg.timeout,
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        finally:
            await cancel_and_wait([waiter])
        if self._refused is not None:
            raise self._refused
        if self._task.done() and not self._task.cancelled() and self._task.exception():
            raise DeviceOfflineError(
                f"the MQTT session failed: {self._task.exception()!r}", resource=self.name
            ) from self._task.exception()
        if not self._online.is_set():
            raise DeviceOfflineError(
                f"cannot reach broker {self.cfg.host}:{self.cfg.port}: "
                f"{self._last_error or 'no answer'}",
                resource=self.name,
            )

    async def _disconnect(self) -> None:
        # The session reconnects on its own: a failed call must not end it.
        if self._stopping:
            await self._stop_session()

    async def disconnect(self) -> None:
        """End the broker session (a later call starts a new one)."""
        self._stopping = True
        try:
            await super().disconnect()
        finally:
            self._stopping = False

    async def close(self) -> None:
        """End the broker session for good."""
        self._stopping = True
        try:
            await super().close()
        finally:
            self._stopping = False
        await self._stop_session()

    async def _stop_session(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task])
            if not task.cancelled() and task.exception() is not None:
                log.error("%s: the MQTT session failed", self.name, exc_info=task.exception())
        self.health.session = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(
                    DeviceOfflineError("closed before the ack came", resource=self.name)
                )
        self._pending.clear()

    async def read_status(self) -> Status:
        """The latest telemetry (subscribers already had it when it arrived)."""
        async with self._lock:
            return await self._retrying(self._read)

    async def _read(self) -> Status:
        if self.latest is None:
            raise StaleTelemetryError(
                f"no telemetry yet on {self.topics.telemetry}", resource=self.name
            )
        received, values = self.latest
        age = time.time() - received
        if age > self.cfg.stale_after_s:
            raise StaleTelemetryError(
                f"telemetry on {self.topics.telemetry} is {age:.1f} s old "
                f"(stale_after_s {self.cfg.stale_after_s:g})",
                resource=self.name,
            )
        return {**values, "age_s": age}

    async def _write(self, command: str, params: Mapping[str, Any]) -> str:
        for key in COMMANDS[command]:
            value = params.get(key)
            if value is None or (key != "mode" and not isinstance(value, (int, float))):
                raise ValidationError(
                    f"{command} needs a number {key!r}, got {value!r}", resource=self.name
                )
        client = self._client
        if client is None:
            raise DeviceOfflineError("not connected to the broker", resource=self.name)
        msg_id = uuid.uuid4().hex
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        try:
            payload = encode({"id": msg_id, "command": command, "params": dict(params)})
            try:
                await client.publish(self.topics.command, payload, qos=self.cfg.qos)
            except aiomqtt.MqttError as exc:
                raise DeviceOfflineError(f"publish failed: {exc}", resource=self.name) from exc
            return await fut
        finally:
            self._pending.pop(msg_id, None)

    # --- the session ----------------------------------------------------------------------

    def _client_args(self, ctx: ssl.SSLContext | None) -> dict[str, Any]:
        handle = self._handle

        class Dispatch(asyncio.Queue[aiomqtt.Message]):
            # aiomqtt puts each message into this queue from the event loop thread; handling
            # it right there saves the task and the wait its message iterator spends per
            # message. Nothing is ever queued: the iterator only waits for the disconnection.
            def put_nowait(self, item: aiomqtt.Message) -> None:
                handle(item)

        return {
            "queue_type": Dispatch,
            "hostname": self.cfg.host,
            "port": self.cfg.port,
            "username": self.cfg.username,
            "password": self.cfg.password,
            "identifier": self.cfg.client_id,
            "keepalive": self.cfg.keepalive,
            "timeout": self.cfg.timeout,
            "tls_context": ctx,
            "tls_insecure": self.cfg.tls_insecure if ctx is not None else None,
        }

    async def _session(self) -> None:
        attempt = 0
        sessions = 0
        while True:
            ctx: TrackingSSLContext | None = None
            try:
                try:
                    ctx = self.cfg.ssl_context()
                except (OSError, ssl.SSLError) as exc:
                    files = [str(f) for f in (self.cfg.ca_file, self.cfg.cert_file) if f]
                    msg = f"TLS files unusable ({', '.join(files) or 'system CAs'}): {exc}"
                    raise DeviceOfflineError(msg, resource=self.name) from exc
                client = aiomqtt.Client(**self._client_args(ctx))
                async with client:
                    for topic in (self.topics.telemetry, self.topics.ack):
                        await client.subscribe(topic, qos=self.cfg.qos)
                    self._client = client
                    if sessions:
                        self.health.reconnects += 1
                        log.info("%s: reconnected to the broker", self.name)
                    sessions += 1
                    attempt = 0
                    self.health.session = ConnectionState.CONNECTED
                    self._online.set()
                    async for message in client.messages:  # ends with MqttError
                        self._handle(message)  # pragma: no cover (Dispatch handles them)
            except MqttConnectError as exc:
                hint = " (check username and password)" if _code(exc) in _AUTH_CODES else ""
                self._refused = ProtocolError(
                    f"broker {self.cfg.host}:{self.cfg.port} refused the connection: "
                    f"{exc}{hint}",
                    resource=self.name,
                    code=_code(exc),
                )
                log.error("%s", self._refused)
                self.health.session = None
                return
            except (aiomqtt.MqttError, DeviceOfflineError) as exc:
                self._last_error = str(exc).removeprefix(f"{self.name}: ")
                self.health.failure("connection")
                log.warning("%s: broker connection lost or refused: %s", self.name, exc)
            finally:
                self._client = None
                self._online.clear()
                if ctx is not None:
                    ctx.close_sockets()
            self.health.session = ConnectionState.BACKOFF
            await asyncio.sleep(self.backoff.delay(attempt))
            attempt += 1
            self.health.session = ConnectionState.CONNECTING

    def _handle(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = message.payload
        if not isinstance(payload, (bytes, bytearray)):
            payload = str(payload).encode()
        try:
            if topic == self.topics.telemetry:
                self._on_telemetry(decode_telemetry(payload))
            elif topic == self.topics.ack:
                self._on_ack(payload)
        except PayloadError as exc:
            self.health.failure(exc.category)
            log.warning("%s: malformed message on %s: %s", self.name, topic, exc)

    def _on_telemetry(self, values: Status) -> None:
        self.latest = (time.time(), values)
        self.health.telemetry += 1
        for callback in list(self._subscribers):
            try:
                callback(dict(values))
            except Exception:  # a subscriber's bug must not break the session
                log.exception("%s: telemetry subscriber failed", self.name)

    def _on_ack(self, payload: bytes | bytearray) -> None:
        ack = decode_ack(payload)
        fut = self._pending.get(ack.id)
        if fut is None or fut.done():
            self.health.late_acks += 1
            log.info("%s: ack %s matches no pending command", self.name, ack.id)
            return
        if ack.ok:
            fut.set_result(ack.detail)
        else:
            fut.set_exception(
                ProtocolError(f"device refused the command: {ack.error}", resource=self.name)
            )


def _code(exc: aiomqtt.MqttCodeError) -> int | None:
    rc = exc.rc
    if rc is None:
        return None
    return int(rc.value) if not isinstance(rc, int) else rc
