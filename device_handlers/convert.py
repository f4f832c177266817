"""Conversions from raw ZCL attribute values to capability values, and the predicates tables use.

Each converter is a small callable ``(raw, cached) -> value | None``: ``raw`` is the attribute
value as zigpy holds it, ``cached`` gives the other attributes of the same cluster (a multiplier,
a zone type) from zigpy's cache. ``None`` means "no reading" (unknown, or not meaningful here).
Converters and predicates that look at other attributes say so in ``needs``, so the handler reads
those attributes with the value and re-derives the reading when one of them changes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from zigpy.zcl import foundation
from zigpy.zcl.foundation import ZCLAttributeDef

from wire.contract import Value


class Cached(Protocol):
    """Read access to one cluster's attribute cache (non-values already filtered out)."""

    def get(self, attribute: ZCLAttributeDef) -> Any: ...


Convert = Callable[[Any, Cached], Value | None]
Predicate = Callable[[Cached], bool]
Needs = tuple[ZCLAttributeDef, ...]


def needs_of(obj: object) -> Needs:
    """The attributes a converter or predicate reads besides the mapped one."""
    return tuple(getattr(obj, "needs", ()))


def is_non_value(attribute: ZCLAttributeDef, value: Any) -> bool:
    """True for the ZCL "invalid/unknown" value of the attribute's data type (e.g. 0x8000, NaN)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    non_value = _integer_non_value(attribute.zcl_type)
    if non_value is None:
        return False
    try:
        return int(value) == non_value
    except (TypeError, ValueError):
        return False


@functools.cache
def _integer_non_value(zcl_type: Any) -> int | None:
    """The non-value of a ZCL data type as an integer; None when it has none to compare with."""
    try:
        non_value = foundation.DataType.from_type_id(zcl_type).non_value
    except (KeyError, ValueError, TypeError):
        return None
    if non_value is None or (isinstance(non_value, float) and math.isnan(non_value)):
        return None
    try:
        return int(non_value)
    except (TypeError, ValueError):
        return None


def plain(value: Any) -> Value:
    """A zigpy value (t.Bool, uint16_t, Single, an enum) as a plain JSON-able Python value."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):
        return int(value)
    return str(value)


def identity(raw: Any, cached: Cached) -> Value | None:
    """The value itself (made plain)."""
    return plain(raw)


def as_bool(raw: Any, cached: Cached) -> Value | None:
    """Any truthy ZCL value (Bool, present_value, on_off) as a bool."""
    return bool(raw)


def scale(factor: float, *, ndigits: int | None = 2) -> Convert:
    """raw * factor, rounded (``scale(1/100)`` turns 2173 into 21.73)."""

    def convert(raw: Any, cached: Cached) -> Value | None:
        value = float(raw) * factor
        return round(value, ndigits) if ndigits is not None else value

    return convert


def divide(divisor: float, *, ndigits: int = 2) -> Convert:
    """raw / divisor, rounded: hundredths of a degree, tenths of a volt, ..."""

    def convert(raw: Any, cached: Cached) -> Value | None:
        return round(float(raw) / divisor, ndigits)

    return convert


def ranged(raw_max: float, out_max: float, *, ndigits: int = 1) -> Convert:
    """Linear rescale from 0..raw_max to 0..out_max (level 0-254 → 0-100 %, hue 0-254 → 0-360°)."""

    def convert(raw: Any, cached: Cached) -> Value | None:
        return round(min(float(raw), raw_max) * out_max / raw_max, ndigits)

    return convert


@dataclass(frozen=True, slots=True)
class multiplier_divisor:
    """raw * multiplier / divisor (both from the cache; missing or 0 → 1) * factor, rounded.

    ``fallbacks`` (multiplier, divisor) stand in while the first pair is not known: Electrical
    Measurement devices without ac_power_multiplier/divisor give power_multiplier/divisor (ZHA
    reads them the same way)."""

    multiplier: ZCLAttributeDef
    divisor: ZCLAttributeDef
    factor: float = 1.0
    ndigits: int = 3
    fallbacks: tuple[ZCLAttributeDef, ZCLAttributeDef] | None = None

    @property
    def needs(self) -> Needs:
        return (self.multiplier, self.divisor, *(self.fallbacks or ()))

    def _get(self, attribute: ZCLAttributeDef, fallback: ZCLAttributeDef | None,
             cached: Cached) -> Any:
        value = cached.get(attribute)
        if value is None and fallback is not None:
            value = cached.get(fallback)
        return value or 1

    def __call__(self, raw: Any, cached: Cached) -> Value | None:
        fallback_mult, fallback_div = self.fallbacks or (None, None)
        mult = self._get(self.multiplier, fallback_mult, cached)
        div = self._get(self.divisor, fallback_div, cached)
        return round(float(raw) * mult / div * self.factor, self.ndigits)


@dataclass(frozen=True, slots=True)
class flag:
    """True when any bit of ``mask`` is set in a bitmap attribute."""

    mask: int

    def __call__(self, raw: Any, cached: Cached) -> Value | None:
        return bool(int(raw) & int(self.mask))


@dataclass(frozen=True, slots=True)
class named:
    """An enum attribute through a {zigpy enum member: vocabulary value} table; others → None."""

    names: Mapping[Any, Value]

    def __call__(self, raw: Any, cached: Cached) -> Value | None:
        try:
            return self.names.get(raw)
        except TypeError:
            return None


@dataclass(frozen=True, slots=True)
class first_flag:
    """The name of the first (mask, name) pair whose bits are set in a bitmap, else ``default``."""

    pairs: tuple[tuple[int, str], ...]
    default: str

    def __call__(self, raw: Any, cached: Cached) -> Value | None:
        bits = int(raw)
        return next((name for mask, name in self.pairs if bits & int(mask)), self.default)


def half_percent(raw: Any, cached: Cached) -> Value | None:
    """PowerConfiguration battery_percentage_remaining is in half-percent: 200 → 100 %, clamped."""
    return max(0.0, min(100.0, float(raw) / 2))


def log_lux(raw: Any, cached: Cached) -> Value | None:
    """IlluminanceMeasurement: measured_value = 10000 * log10(lux) + 1, 0 meaning too dark."""
    value = int(raw)
    if value == 0:
        return 0
    return round(10 ** ((value - 1) / 10000))


def mireds_to_kelvin(raw: Any, cached: Cached) -> Value | None:
    """Color temperature in mireds (1e6 / K) as kelvin; 0 mireds is meaningless."""
    mireds = int(raw)
    return round(1_000_000 / mireds) if mireds > 0 else None


def kelvin_to_mireds(kelvin: float) -> int:
    return max(1, round(1_000_000 / kelvin))


def percent_to(raw_max: int, percent: float) -> int:
    """0-100 % → 0..raw_max, rounded (level and saturation: 254)."""
    return max(0, min(raw_max, round(percent * raw_max / 100)))


def tenths(seconds: float) -> int:
    """A transition in seconds as the ZCL transition_time in tenths of a second."""
    return max(0, min(0xFFFF, round(seconds * 10)))


@dataclass(frozen=True, slots=True)
class scaled_pressure:
    """Pressure scaled_value = 10^scale * pressure [Pa], as hPa (None until scale is known)."""

    scale: ZCLAttributeDef

    @property
    def needs(self) -> Needs:
        return (self.scale,)

    def __call__(self, raw: Any, cached: Cached) -> Value | None:
        exponent = cached.get(self.scale)
        if exponent is None:
            return None
        return round(float(raw) / 10 ** int(exponent) / 100, 2)


def members(values: Iterable[Any]) -> frozenset[Any]:
    return frozenset(values)


# --- predicates -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class attr_in:
    """The cached ``attribute`` is one of ``values`` (``unknown`` decides when not cached)."""

    attribute: ZCLAttributeDef
    values: frozenset[Any]
    unknown: bool = False
    negate: ClassVar[bool] = False

    @property
    def needs(self) -> Needs:
        return (self.attribute,)

    def __call__(self, cached: Cached) -> bool:
        value = cached.get(self.attribute)
        if value is None:
            return self.unknown
        return (value in self.values) != self.negate


@dataclass(frozen=True, slots=True)
class attr_not_in(attr_in):
    """The cached ``attribute`` is none of ``values`` (``unknown`` decides when not cached)."""

    unknown: bool = True
    negate: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class has_flag:
    """A cached bitmap has any bit of ``mask`` set (``unknown`` decides when not cached)."""

    attribute: ZCLAttributeDef
    mask: int
    unknown: bool = True

    @property
    def needs(self) -> Needs:
        return (self.attribute,)

    def __call__(self, cached: Cached) -> bool:
        value = cached.get(self.attribute)
        if value is None:
            return self.unknown
        return bool(int(value) & int(self.mask))


@dataclass(frozen=True, slots=True)
class attr_missing:
    """True while ``attribute`` has no cached value (a fallback for a more precise attribute)."""

    attribute: ZCLAttributeDef

    @property
    def needs(self) -> Needs:
        return (self.attribute,)

    def __call__(self, cached: Cached) -> bool:
        return cached.get(self.attribute) is None
