"""A simulated BESS that speaks MQTT: publishes telemetry and obeys commands.

Backed by :class:`vpp.sim.bess_model.BessModel`, stepped every ``period_s`` on the
elapsed wall time; each step publishes one telemetry message (the keys of the Modbus
simulator's measurement points, plus ``ts``) and every command is answered with an ack
(topics and payloads in :mod:`vpp.drivers.mqtt_payload`). The device reconnects after
losing the broker, as a field gateway would.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from pathlib import Path
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from vpp.aio import Startable, cancel_and_wait
from vpp.drivers.mqtt_payload import CommandMessage, PayloadError, Topics, decode_command, encode
from vpp.sim.bess_model import BessCommand, BessModel
from vpp.validation import config_error

__all__ = ["MODES", "MqttBessDevice"]

log = logging.getLogger(__name__)

#: Names of the modes ``set_mode`` takes (or their numbers).
MODES = {"standby": 0, "power_control": 1}


class MqttBessDevice(Startable):
    """A BESS on an MQTT broker (start/stop, or ``async with``)."""

    def __init__(
        self,
        device: str,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        prefix: str = "vpp",
        model: BessModel | None = None,
        period_s: float = 0.1,
        qos: int = 1,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
    ) -> None:
        """Configure the device; ``model`` defaults to a 1 MWh / 500 kW unit at 50 % SOC."""
        if not 0 < period_s <= 60:
            raise config_error(
                f"MQTT device: period_s must be in (0, 60], got {period_s}", "period_s"
            )
        self.topics = Topics.of(prefix, device)
        self.host, self.port, self.qos = host, port, qos
        self.period_s = period_s
        self.model = model or BessModel(capacity_kwh=1000.0, p_max_kw=500.0, soc_pct=50.0)
        self.command = BessCommand()
        self.steps = 0
        self.commands_done = 0
        self.commands_refused = 0
        self.connects = 0
        self._auth = (username, password)
        self._ca_file = ca_file
        self._task: asyncio.Task[None] | None = None
        self._stepper: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def start(self) -> None:
        """Start the session; returns once subscribed to the command topic."""
        if self._task is not None:
            raise RuntimeError("MqttBessDevice already started")
        self._task = asyncio.create_task(self._run(), name=f"mqtt-bess:{self.topics.command}")
        waiter = asyncio.ensure_future(self._connected.wait())
        try:
            await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait([waiter])
        if self._task.done():
            self._task.result()  # raises the session's error

    async def stop(self) -> None:
        """Disconnect and stop stepping."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task])
            if not task.cancelled() and task.exception() is not None:
                log.error("MQTT device %s failed", self.topics.command, exc_info=task.exception())
        # The session may have been cancelled while stopping its stepper.
        await self._stop_stepper()

    async def _stop_stepper(self) -> None:
        stepper, self._stepper = self._stepper, None
        if stepper is None:
            return
        # Ends the stepper even if this session is cancelled meanwhile (stop() during a
        # reconnect): cancel_and_wait finishes before it lets the cancellation through.
        await cancel_and_wait([stepper])
        if not stepper.cancelled():
            stepper.exception()  # a lost broker: the session reconnects

    async def _run(self) -> None:
        ctx = ssl.create_default_context(cafile=str(self._ca_file)) if self._ca_file else None
        last = time.monotonic()
        while True:
            client = aiomqtt.Client(
                self.host, self.port, username=self._auth[0], password=self._auth[1],
                tls_context=ctx, keepalive=10,
            )  # fmt: skip
            try:
                async with client:
                    await client.subscribe(self.topics.command, qos=self.qos)
                    self.connects += 1
                    self._connected.set()
                    self._stepper = asyncio.create_task(self._step_loop(client, last))
                    try:
                        async for message in client.messages:
                            await self._on_message(client, message)
                    finally:
                        await self._stop_stepper()
            except MqttConnectError:
                raise  # refused (credentials): retrying would not help
            except aiomqtt.MqttError as exc:
                log.info("MQTT device %s: broker lost (%s); retrying", self.topics.command, exc)
            last = time.monotonic()
            await asyncio.sleep(0.05)

    async def _step_loop(self, client: aiomqtt.Client, last: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            deadline += self.period_s
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            now = time.monotonic()
            self.model.step(self.command, now - last)
            last = now
            self.steps += 1
            await client.publish(self.topics.telemetry, encode(self.telemetry()), qos=self.qos)

    def telemetry(self) -> dict[str, Any]:
        """The telemetry message of the model's present state."""
        return {
            "ts": time.time(),
            **self.model.measurements(),
            "enabled": self.command.enable,
            "mode": self.command.mode,
            "p_setpoint": self.command.p_kw,
            "q_setpoint": self.command.q_kvar,
        }

    async def _on_message(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        payload = message.payload
        if not isinstance(payload, (bytes, bytearray)):
            payload = str(payload).encode()
        try:
            cmd = decode_command(payload)
        except PayloadError as exc:
            # No id to answer to: the controller's timeout reports it.
            self.commands_refused += 1
            log.warning("MQTT device %s: %s", self.topics.command, exc)
            return
        try:
            detail = self.apply(cmd)
        except ValueError as exc:
            self.commands_refused += 1
            ack = {"id": cmd.id, "ok": False, "error": str(exc)}
        else:
            self.commands_done += 1
            ack = {"id": cmd.id, "ok": True, "detail": detail}
        await client.publish(self.topics.ack, encode(ack), qos=self.qos)

    def apply(self, cmd: CommandMessage) -> str:
        """Carry out ``cmd`` on the command state; ValueError when it is refused."""
        c, p = self.command, cmd.params
        if cmd.command == "set_power":
            c.p_kw = _number(p, "kw")
            return f"p_kw={c.p_kw:g}"
        if cmd.command == "set_reactive_power":
            c.q_kvar = _number(p, "kvar")
            return f"q_kvar={c.q_kvar:g}"
        if cmd.command == "set_mode":
            mode = p.get("mode")
            code = MODES.get(mode) if isinstance(mode, str) else mode
            if not isinstance(code, int) or isinstance(code, bool) or code not in MODES.values():
                raise ValueError(f"unknown mode {mode!r}; known: {sorted(MODES)}")
            c.mode = code
            return f"mode={c.mode}"
        if cmd.command in ("enable", "disable"):
            c.enable = cmd.command == "enable"
            return f"enable={c.enable}"
        if cmd.command == "emergency_stop":
            c.enable, c.mode, c.p_kw, c.q_kvar = False, 0, 0.0, 0.0
            return "stopped"
        raise ValueError(f"unknown command {cmd.command!r}")


def _number(params: dict[str, Any], key: str) -> float:
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"param {key!r} is {value!r}, not a number")
    return float(value)
