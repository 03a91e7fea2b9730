"""Geo functions and seeded shuffles, computed exactly as JavaRosa (ODK Collect) does.

Why this exists: distance(), area() and geofence() feed constraints and calculations, and
randomize(nodes, seed) decides the order of choices a respondent saw; to reproduce a device's
answers the evaluator must use JavaRosa's earth model, point parsing and pseudo-random
generator (Park–Miller feeding an out-of-place Fisher–Yates shuffle), not merely similar ones.
"""

from __future__ import annotations

import hashlib
import math

__all__ = ["GeoError", "area", "distance", "geofence", "java_long", "parse_point", "parse_shape",
           "seed_from_text", "shuffled_order"]

_RADIUS = 6_378_100.0  # JavaRosa's earth: equatorial radius in metres
_CIRCUMFERENCE = 2 * _RADIUS * math.pi

Point = tuple[float, float]


class GeoError(ValueError):
    """A value that does not represent GPS coordinates."""


def parse_point(text: str) -> Point:
    """A geopoint 'lat lon [alt [accuracy]]' (JavaRosa's GeoPointData: missing parts are 0)."""
    parts = [p for p in text.split(" ") if p]
    if len(parts) > 4:
        raise GeoError(f"not GPS coordinates: {text!r}")
    try:
        values = [float(p) for p in parts]  # Java's Double.parseDouble
    except ValueError:
        raise GeoError(f"not GPS coordinates: {text!r}") from None
    values += [0.0] * (2 - len(values))
    return values[0], values[1]


def parse_shape(text: str) -> list[Point]:
    """A geoshape or geotrace: points separated by ';'."""
    return [parse_point(part.strip()) for part in text.split(";")]


def _between(p1: Point, p2: Point) -> float:
    dlon = math.radians(p1[1] - p2[1])
    phi1, phi2 = math.radians(p1[0]), math.radians(p2[0])
    cos_angle = math.sin(phi1) * math.sin(phi2) + math.cos(phi1) * math.cos(phi2) * math.cos(dlon)
    try:
        return math.acos(cos_angle) * _RADIUS
    except ValueError:  # rounding took |cos| past 1: Java's acos gives NaN
        return math.nan


def distance(points: list[Point]) -> float:
    """Length in metres of the path through ``points`` (great circles)."""
    return sum((_between(a, b) for a, b in zip(points, points[1:], strict=False)), 0.0)


def area(points: list[Point]) -> float:
    """Area in square metres of the polygon (JavaRosa's planar triangle fan)."""
    if len(points) < 3:
        return 0.0
    lat0, lon0 = points[0]
    ys = [(lat - lat0) * _CIRCUMFERENCE / 360.0 for lat, _ in points[1:]]
    xs = [(lon - lon0) * _CIRCUMFERENCE * math.cos(math.radians(lat)) / 360.0
          for lat, lon in points[1:]]
    total = sum((ys[i - 1] * xs[i] - xs[i - 1] * ys[i]) / 2 for i in range(1, len(xs)))
    return abs(total)


def geofence(point: Point, polygon: list[Point]) -> bool:
    """Whether ``point`` is inside ``polygon`` (ray casting; the shape repeats its first point)."""
    lat, lon = point
    inside = False
    for (lat1, lon1), (lat2, lon2) in zip(polygon, polygon[1:], strict=False):
        if (lat2 > lat) != (lat1 > lat) and \
                lon < (lon1 - lon2) * (lat - lat2) / (lat1 - lat2) + lon2:
            inside = not inside
    return inside


# ---- randomize() ----------------------------------------------------------------------------

_MODULUS = 2147483647
_MULTIPLIER = 16807


def seed_from_text(text: str) -> int:
    """JavaRosa's seed for a text that is not a number: the first 8 bytes of its SHA-256 as a
    signed big-endian long ('' is 0)."""
    if not text:
        return 0
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big",
                          signed=True)


def java_long(value: float) -> int:
    """Java's (long) cast of a double: toward zero, saturating; NaN is 0."""
    if value != value:
        return 0
    if value >= 2.0**63:
        return 2**63 - 1
    if value <= -(2.0**63):
        return -(2**63)
    return int(value)


def shuffled_order(size: int, seed: int) -> list[int]:
    """The order randomize() puts ``size`` nodes in for ``seed``: positions of the input, in
    output order (Park–Miller generator, out-of-place Fisher–Yates, as JavaRosa 5)."""
    state = math.fmod(float(seed), _MODULUS)
    if state <= 0:
        state += _MODULUS - 1
    out: list[int] = [0] * size
    for i in range(size):
        state = state * _MULTIPLIER % _MODULUS
        j = int((int(state) - 1) / (_MODULUS - 1) * (i + 1))
        if j != i:
            out[i] = out[j]
        out[j] = i
    return out
