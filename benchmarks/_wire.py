"""Round trips as the wire saw them: tcpdump on the loopback interface, for a benchmark that
wants to know how much of a load tool's reported latency is the tool's own.

A round trip runs from a packet carrying request bytes towards the server's port to the next
packet carrying answer bytes back on the same connection (one request in flight per connection,
as both chaoskit and wrk send). The timestamps are the kernel's, taken as each packet passes
the capture point on ``lo``, to the nanosecond.

Use::

    with WireCapture(port) as capture:
        ... traffic ...
    trips = capture.round_trips()   # seconds, numpy array

Needs tcpdump (``apt-get install -y tcpdump``) and the right to capture (root, or
CAP_NET_RAW). The classic pcap format is read by hand: four fields of fixed headers, no
library needed.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import tempfile
from collections import defaultdict, deque
from pathlib import Path
from types import TracebackType

import numpy as np

_NANO_MAGIC = 0xA1B23C4D
_ETHERNET = 1
_COOKED = 113
_IPV4 = 0x0800


def available() -> str | None:
    """None if a capture can run here, else why not."""
    if shutil.which("tcpdump") is None:
        return "tcpdump not found (apt-get install -y tcpdump)"
    if os.geteuid() != 0:
        return "capturing on lo needs root (or tcpdump with CAP_NET_RAW): run as root"
    return None


class WireCapture:
    """tcpdump on ``lo`` for TCP traffic to and from ``port``, while the block runs."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._folder = tempfile.TemporaryDirectory(prefix="chaoskit-wire-")
        self.path = Path(self._folder.name, "lo.pcap")
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> WireCapture:
        command = ["tcpdump", "-i", "lo", "-s", "128", "-B", "65536", "-w", str(self.path),
                   "--time-stamp-precision=nano", f"tcp port {self.port}"]  # fmt: skip
        self._process = subprocess.Popen(command, stderr=subprocess.PIPE)
        assert self._process.stderr is not None
        said = b""
        for line in self._process.stderr:  # tcpdump says so once it captures
            said += line
            if line.startswith(b"tcpdump: listening on"):
                return self
        self._process.wait()
        self._folder.cleanup()
        raise RuntimeError(f"tcpdump did not start: {said.decode(errors='replace')}")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGINT)  # it writes out what it holds, then exits
            self._process.communicate(timeout=30)

    def round_trips(self) -> np.ndarray:
        """Each request's round trip on the wire (seconds), in the order answers passed; a
        RuntimeError if none passed (nothing to take a median of)."""
        data = self.path.read_bytes()
        self._folder.cleanup()
        magic, link = struct.unpack_from("<I", data)[0], struct.unpack_from("<I", data, 20)[0]
        scale = 1e-9 if magic == _NANO_MAGIC else 1e-6
        asked: defaultdict[int, deque[float]] = defaultdict(deque)
        trips: list[float] = []
        offset = 24
        while offset + 16 <= len(data):
            seconds, fraction, kept, _ = struct.unpack_from("<IIII", data, offset)
            packet = data[offset + 16 : offset + 16 + kept]
            offset += 16 + kept
            if link == _ETHERNET and struct.unpack_from("!H", packet, 12)[0] == _IPV4:
                ip = packet[14:]
            elif link == _COOKED and struct.unpack_from("!H", packet, 14)[0] == _IPV4:
                ip = packet[16:]
            else:
                continue
            header = (ip[0] & 0x0F) * 4
            tcp = ip[header:]
            source, destination = struct.unpack_from("!HH", tcp)
            payload = struct.unpack_from("!H", ip, 2)[0] - header - (tcp[12] >> 4) * 4
            if payload <= 0:
                continue
            at = seconds + fraction * scale
            if destination == self.port:
                asked[source].append(at)
            elif source == self.port and asked[destination]:
                trips.append(at - asked[destination].popleft())
        if not trips:
            raise RuntimeError(f"tcpdump saw no answered request on port {self.port}")
        return np.asarray(trips)
