"""Physical units as OME-NGFF wants them (UDUNITS-2 names)."""

from __future__ import annotations

from volumetric.errors import InputError

SPACE_UNITS = frozenset(
    """angstrom attometer centimeter decimeter exameter femtometer foot gigameter
    hectometer inch kilometer megameter meter micrometer mile millimeter nanometer
    parsec petameter picometer terameter yard yoctometer yottameter zeptometer
    zettameter""".split()
)
TIME_UNITS = frozenset(
    """attosecond centisecond day decisecond exasecond femtosecond gigasecond
    hectosecond hour kilosecond megasecond microsecond millisecond minute
    nanosecond petasecond picosecond second terasecond yoctosecond yottasecond
    zeptosecond zettasecond""".split()
)
_ALIASES = {
    "um": "micrometer",
    "µm": "micrometer",
    "μm": "micrometer",
    "\\u00b5m": "micrometer",
    "micron": "micrometer",
    "microns": "micrometer",
    "micrometre": "micrometer",
    "micrometers": "micrometer",
    "nm": "nanometer",
    "nanometre": "nanometer",
    "nanometers": "nanometer",
    "mm": "millimeter",
    "millimetre": "millimeter",
    "cm": "centimeter",
    "m": "meter",
    "metre": "meter",
    "a": "angstrom",
    "å": "angstrom",
    "pm": "picometer",
    "s": "second",
    "sec": "second",
    "ms": "millisecond",
    "us": "microsecond",
    "min": "minute",
    "h": "hour",
}
# Units that mean "no physical size is known" in common file formats.
_UNKNOWN = {"", "pixel", "pixels", "px", "none", "unknown"}


def normalize_unit(name: str | None, *, time: bool = False) -> str | None:
    """Return the UDUNITS-2 name of a length (or time) unit, or None when unknown.

    Parameters
    ----------
    name : str or None
        A unit as found in metadata or typed by a user: ``"um"``, ``"µm"``,
        ``"micron"``, ``"micrometer"``...
    time : bool
        Expect a time unit instead of a length.

    Raises
    ------
    InputError
        When ``name`` is not a unit OME-NGFF accepts.

    Examples
    --------
    >>> normalize_unit("µm")
    'micrometer'
    >>> normalize_unit("pixel") is None
    True
    """
    if name is None:
        return None
    key = str(name).strip()
    if key.lower() in _UNKNOWN:
        return None
    unit = _ALIASES.get(key, _ALIASES.get(key.lower(), key.lower()))
    allowed = TIME_UNITS if time else SPACE_UNITS
    if unit not in allowed:
        kind = "time" if time else "length"
        raise InputError(f"unknown {kind} unit {name!r}; use a UDUNITS name such as "
                         f"{'second' if time else 'micrometer'}")
    return unit
