"""Settings of the MQTT driver (:class:`MqttConfig`) and its TLS context.

The keys and defaults are listed in docs/configuration.md; :mod:`vpp.drivers.mqtt`
re-exports :class:`MqttConfig`.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from vpp.drivers.base import ProtocolConfig

__all__ = ["MqttConfig", "TrackingSSLContext"]


class MqttConfig(ProtocolConfig):
    """Settings of :class:`MqttProtocol`."""

    host: str = Field(default="127.0.0.1", min_length=1, description="broker host")
    port: int = Field(default=1883, ge=1, le=65535, description="broker port")
    device: str = Field(min_length=1, pattern=r"^[^/+#]+$", description="device name in topics")
    prefix: str = Field(default="vpp", min_length=1, pattern=r"^[^+#]+$", description="topic root")
    qos: int = Field(default=1, ge=0, le=2, description="QoS of subscriptions and commands")
    stale_after_s: float = Field(default=5.0, gt=0, le=3600, description="telemetry max age, s")
    keepalive: int = Field(default=30, ge=5, le=3600, description="MQTT keepalive, s")
    client_id: str | None = Field(default=None, description="None: a random one")
    username: str | None = None
    password: str | None = None
    tls: bool = Field(default=False, description="TLS on (implied by ca_file)")
    ca_file: Path | None = Field(default=None, description="CA bundle; None: system CAs")
    cert_file: Path | None = Field(default=None, description="client certificate (PEM)")
    key_file: Path | None = Field(default=None, description="client key (PEM)")
    tls_insecure: bool = Field(default=False, description="skip the host name check")

    @model_validator(mode="after")
    def _consistent(self) -> MqttConfig:
        if self.password is not None and self.username is None:
            raise ValueError("password given without username")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file given without cert_file")
        if not self.use_tls and (self.cert_file is not None or self.tls_insecure):
            raise ValueError("cert_file and tls_insecure need tls (or ca_file)")
        return self

    @property
    def use_tls(self) -> bool:
        """Whether the connection is TLS."""
        return self.tls or self.ca_file is not None

    def ssl_context(self) -> TrackingSSLContext | None:
        """The TLS context (None without TLS); unreadable files raise OSError/SSLError."""
        if not self.use_tls:
            return None
        ctx = TrackingSSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.ca_file is not None:
            ctx.load_verify_locations(cafile=str(self.ca_file))
        else:
            ctx.load_default_certs()
        if self.tls_insecure:
            ctx.check_hostname = False
        if self.cert_file is not None:
            key = str(self.key_file) if self.key_file else None
            ctx.load_cert_chain(str(self.cert_file), key)
        return ctx


class TrackingSSLContext(ssl.SSLContext):
    """An SSL context that remembers the sockets it wrapped, so that they can be closed:
    paho-mqtt 2.2 leaves the socket open when the TLS handshake fails."""

    sockets: list[ssl.SSLSocket]

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        """Wrap as usual and remember the socket."""
        sock = super().wrap_socket(*args, **kwargs)
        if not hasattr(self, "sockets"):
            self.sockets = []
        self.sockets.append(sock)
        return sock

    def close_sockets(self) -> None:
        """Close every socket wrapped so far (closing a closed one does nothing)."""
        for sock in getattr(self, "sockets", ()):
            sock.close()
        self.sockets = []
