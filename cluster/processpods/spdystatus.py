"""An exec's exit status as a kubelet reports it, read off KWOK's SPDY stream by the kubelet front.

Why: KWOK runs an exec's command itself and reports any non-zero exit as an
internal error that quotes the host command line ("Internal error occurred: …
cmd wait: nsenter --target=… setpriv … : exit status 2"). A kubelet reports it
as a ``NonZeroExitCode`` status whose cause carries the code, so that ``kubectl
exec`` prints "command terminated with exit code 2" and exits 2. The front
rewrites that one status message, on the exec's error stream, and nothing else.

SPDY/3 frames (draft-mbelshe-httpbis-spdy-00): an 8-byte header, the first bit
set for a control frame (version, type, flags, 24-bit length) or clear for a
data frame (31-bit stream id, flags, 24-bit length). A remotecommand client
opens the error stream before stdin/stdout/stderr (client-go's stream
protocols); the front takes the first SYN_STREAM's id as the error stream.
Data frames carry no compressed state and spdystream keeps no flow-control
window, so a data frame may be re-sized.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

HEADER = 8
SYN_STREAM = 1
#: How Go's os/exec names a signal that ended the command, and the shell's 128 + n for it.
SIGNAL_CODES = {"hangup": 129, "interrupt": 130, "quit": 131, "aborted": 134, "killed": 137,
                "segmentation fault": 139, "broken pipe": 141, "terminated": 143}
#: KWOK's message ends with Go's error for the command ("...: exit status 2"), after the command line itself,
#: which the command's own arguments could fill with look-alikes: only the very end counts.
EXIT = re.compile(r": exit status (\d+)\s*\Z")
SIGNALLED = re.compile(r": signal: ([a-z ]+)\s*\Z")


def kubelet_status(payload: bytes) -> bytes | None:
    """The status a kubelet would send for KWOK's ``payload``; None when it is to pass unchanged."""
    try:
        status = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(status, dict) or status.get("status") != "Failure":
        return None
    message = str(status.get("message", ""))
    code = None
    if found := EXIT.search(message):
        code = int(found.group(1))
    elif (found := SIGNALLED.search(message)) and found.group(1) in SIGNAL_CODES:
        code = SIGNAL_CODES[found.group(1)]
    if code is not None:
        out = {"status": "Failure", "reason": "NonZeroExitCode",
               "message": f"command terminated with non-zero exit code: command terminated with exit code {code}",
               "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
    else:  # the command never ran: say why, without the host command line
        why = message.rsplit(": ", 1)[-1].strip() or "unknown error"
        out = {"status": "Failure", "reason": "InternalError", "code": 500,
               "message": f"Internal error occurred: error executing command in container: {why}"}
    return json.dumps(out, separators=(",", ":")).encode()


@dataclass
class ExecStreams:
    """What both directions of one exec connection share: the error stream's id, once the client opened it."""

    error_stream: int | None = None


class FrameScanner:
    """Cuts a byte stream into SPDY frames; hands back bytes to forward (whole frames only)."""

    def __init__(self, streams: ExecStreams, from_client: bool) -> None:
        self.streams = streams
        self.from_client = from_client
        self.buffer = bytearray()

    def feed(self, data: bytes) -> bytes:
        self.buffer += data
        out = bytearray()
        while len(self.buffer) >= HEADER:
            length = int.from_bytes(self.buffer[5:8], "big")
            if len(self.buffer) < HEADER + length:
                break
            frame = bytes(self.buffer[:HEADER + length])
            del self.buffer[:HEADER + length]
            out += self._frame(frame)
        return bytes(out)

    def _frame(self, frame: bytes) -> bytes:
        control = frame[0] & 0x80
        if control:
            kind = int.from_bytes(frame[2:4], "big")
            if self.from_client and kind == SYN_STREAM and self.streams.error_stream is None and len(frame) >= 12:
                self.streams.error_stream = int.from_bytes(frame[8:12], "big") & 0x7FFFFFFF
            return frame
        stream = int.from_bytes(frame[0:4], "big") & 0x7FFFFFFF
        payload = frame[HEADER:]
        if self.from_client or stream != self.streams.error_stream or not payload:
            return frame
        new = kubelet_status(payload)
        if new is None:
            return frame
        return frame[0:5] + len(new).to_bytes(3, "big") + new
