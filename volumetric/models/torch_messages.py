"""One-line causes from torch's multi-line error messages."""

from __future__ import annotations

import re

_RAISED = re.compile(r"^(?:[A-Za-z_][\w.]*)?(?:Error|Exception): (.+)$")
_KEY_LIST = re.compile(r"^((?:Missing|Unexpected) key\(s\) in state_dict): (.+?)\.?$")
KEYS_SHOWN = 3


def _lines(exc: BaseException) -> list[str]:
    return [line.strip() for line in str(exc).splitlines() if line.strip()]


def error_cause(exc: BaseException) -> str:
    """The line of a torch error that names its cause.

    A TorchScript model's error starts with "The following operation failed
    in the TorchScript interpreter.", then its TorchScript traceback, and
    ends with the raised error (``RuntimeError: expected input ... to have 2
    channels``); that last error line is the cause. Other errors are their
    first line.
    """
    lines = _lines(exc)
    raised = [m.group(1) for m in map(_RAISED.match, lines) if m]
    if raised:
        return raised[-1]
    return lines[0] if lines else type(exc).__name__


def state_dict_problem(exc: BaseException) -> str:
    """The first problem listed by a failed ``load_state_dict``, with at most a few key names.

    ``Error(s) in loading state_dict for UNet:`` is followed by one line per
    kind of problem (missing keys, unexpected keys, a size mismatch per tensor).
    """
    lines = _lines(exc)
    if len(lines) < 2:
        return lines[0] if lines else type(exc).__name__
    match = _KEY_LIST.match(lines[1])
    if match is None:
        return lines[1]
    keys = match.group(2).split(", ")
    more = f" and {len(keys) - KEYS_SHOWN} more" if len(keys) > KEYS_SHOWN else ""
    return f"{match.group(1)}: {', '.join(keys[:KEYS_SHOWN])}{more}"
