"""DHS-style random displacement of cluster GPS points before release.

Why: a cluster's true coordinates plus a child's age and sex often single out one household
in a rural village. DHS therefore moves every cluster point once, by a random angle and a
random distance: urban clusters 0-2 km, rural clusters 0-5 km, and a further 1 in 100 rural
clusters 0-10 km, so nobody can rely on a rural point being within 5 km. The displaced point
must stay inside the same region (and country, admin-2): analysts join GPS to administrative
covariates, and a point pushed across a border would both mislead them and hint at where the
original lay.

Rules implemented here:

- One displacement per cluster; rows of the same cluster (e.g. one per household) get the
  same displaced point. Their lat, lon, urban and region must agree.
- Distance uniform on [0, max] and angle uniform on [0, 2 pi), as in DHS; destination on a
  sphere of radius 6371.0088 km.
- The 10 km rural clusters: rural clusters are put in a random order and every 100th one
  (the 100th, 200th, ...) gets the 10 km maximum, i.e. floor(n_rural / 100) clusters.
  Random order, so which clusters were moved further is not predictable from their IDs.
- Containment: ``inside(lat, lon, region) -> bool`` (check country, region and admin-2 in it)
  or ``regions``, a mapping region -> polygon of (lat, lon) vertices (or a list of such
  polygons). A draw outside is redrawn, up to ``max_tries`` times; then the maximum distance
  is halved and the draws repeat (three halvings at most). A cluster whose true point is not
  inside its own region, or that cannot be placed even at 1/8 of the distance, is an error:
  the boundary data or the coordinates are wrong and must be fixed, not released.
- With neither ``inside`` nor ``regions`` no containment is checked (tests, or a country
  without boundary files); do not release such points without review.

Errors are :class:`~dhsurvey.errors.DhsurveyError` with codes ``gps-column-missing``,
``gps-bad-point``, ``gps-inconsistent-cluster``, ``gps-outside-region``,
``gps-displacement-failed``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dhsurvey.errors import DhsurveyError

EARTH_RADIUS_KM = 6371.0088
URBAN_MAX_KM = 2.0
RURAL_MAX_KM = 5.0
RURAL_FAR_MAX_KM = 10.0
#: Every this-many-th rural cluster (in random order) gets ``RURAL_FAR_MAX_KM``.
RURAL_FAR_EVERY = 100
#: How many times the maximum distance may be halved when draws keep leaving the region.
MAX_HALVINGS = 3

Inside = Callable[[float, float, Any], bool]
Polygon = Sequence[tuple[float, float]]

_COLUMNS = ("cluster", "lat", "lon", "urban", "region")


def haversine_km(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> Any:
    """Great-circle distance in km (arrays or scalars, degrees)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def _destination(
    lat: np.ndarray, lon: np.ndarray, bearing: np.ndarray, km: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Point reached from (lat, lon) after ``km`` along initial bearing ``bearing`` (rad)."""
    p1, l1 = np.radians(lat), np.radians(lon)
    d = km / EARTH_RADIUS_KM
    p2 = np.arcsin(np.sin(p1) * np.cos(d) + np.cos(p1) * np.sin(d) * np.cos(bearing))
    l2 = l1 + np.arctan2(
        np.sin(bearing) * np.sin(d) * np.cos(p1), np.cos(d) - np.sin(p1) * np.sin(p2)
    )
    lon2 = (np.degrees(l2) + 180.0) % 360.0 - 180.0
    return np.degrees(p2), lon2


def _in_ring(lat: float, lon: float, ring: np.ndarray) -> bool:
    """Even-odd ray casting on one ring of (lat, lon) vertices (planar, fine at region scale)."""
    y, x = ring[:, 0], ring[:, 1]
    y2, x2 = np.roll(y, -1), np.roll(x, -1)
    crosses = (y > lat) != (y2 > lat)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x + (lat - y) * (x2 - x) / (y2 - y)
    return bool(np.count_nonzero(crosses & (lon < x_at)) % 2)


def polygon_inside(regions: Mapping[Hashable, Polygon | Sequence[Polygon]]) -> Inside:
    """An ``inside`` callback from region polygons of (lat, lon) vertices.

    A region may be one polygon or a list of polygons (islands); a point inside an odd number
    of a region's rings is inside it (so a ring inside another is a hole).
    """
    rings: dict[Hashable, list[np.ndarray]] = {}
    for region, shape in regions.items():
        single = np.ndim(shape[0][0]) == 0  # first item a vertex, not a polygon
        parts = [shape] if single else list(shape)
        rings[region] = [np.asarray(p, dtype=np.float64) for p in parts]

    def inside(lat: float, lon: float, region: Any) -> bool:
        if region not in rings:
            return False
        return sum(_in_ring(lat, lon, ring) for ring in rings[region]) % 2 == 1

    return inside


def _clusters(points: pd.DataFrame) -> pd.DataFrame:
    """One row per cluster, checked for consistency."""
    missing = [c for c in _COLUMNS if c not in points.columns]
    if missing:
        raise DhsurveyError(
            f"points need columns {', '.join(_COLUMNS)}; missing {', '.join(missing)}",
            code="gps-column-missing",
            column=missing[0],
        )
    pts = points[list(_COLUMNS)]
    bad = (
        pts[["cluster", "lat", "lon", "urban"]].isna().any(axis=1)
        | ~pts["lat"].between(-90, 90)
        | ~pts["lon"].between(-180, 180)
    )
    if bad.any():
        raise DhsurveyError(
            f"{int(bad.sum())} point(s) lack a cluster, urban flag or valid coordinates",
            code="gps-bad-point",
            row=str(points.index[int(np.argmax(bad.to_numpy()))]),
        )
    clusters = pts.drop_duplicates()
    dup = clusters["cluster"].duplicated(keep=False)
    if dup.any():
        raise DhsurveyError(
            "rows of one cluster disagree on lat, lon, urban or region",
            code="gps-inconsistent-cluster",
            cluster=str(clusters.loc[dup, "cluster"].iloc[0]),
        )
    clusters = clusters.reset_index(drop=True)
    clusters["urban"] = clusters["urban"].astype(bool)
    return clusters


def _max_distances(urban: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """2 km urban, 5 km rural, 10 km for every 100th rural cluster in a random order."""
    max_km = np.where(urban, URBAN_MAX_KM, RURAL_MAX_KM)
    rural = np.flatnonzero(~urban)
    shuffled = rng.permutation(rural)
    max_km[shuffled[RURAL_FAR_EVERY - 1 :: RURAL_FAR_EVERY]] = RURAL_FAR_MAX_KM
    return max_km


def _check_own_points(clusters: pd.DataFrame, lat: np.ndarray, lon: np.ndarray,
                      region: np.ndarray, inside: Inside) -> None:
    """Every cluster's true point must lie inside its own region."""
    for i in range(len(clusters)):
        if not inside(lat[i], lon[i], region[i]):
            raise DhsurveyError(
                "the cluster's own point is not inside its region; check the boundary "
                "file and the coordinates",
                code="gps-outside-region",
                cluster=str(clusters.loc[i, "cluster"]),
                region=str(region[i]),
            )


def _draw(lat0: np.ndarray, lon0: np.ndarray, region: np.ndarray, max_km: np.ndarray,
          inside: Inside | None, rng: np.random.Generator, max_tries: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random displacements within ``max_km``, redrawn while outside the region and halved
    when ``max_tries`` draws fail: (lat, lon, distance, the maximum used, clusters never
    placed)."""
    n = len(lat0)
    cap = max_km.copy()
    lat1, lon1, dist = lat0.copy(), lon0.copy(), np.zeros(n)
    pending = np.arange(n)
    for halving in range(MAX_HALVINGS + 1):
        cap[pending] = max_km[pending] / 2**halving
        for _ in range(max_tries):
            if not len(pending):
                break
            km = rng.uniform(0.0, cap[pending])
            bearing = rng.uniform(0.0, 2 * np.pi, len(pending))
            la, lo = _destination(lat0[pending], lon0[pending], bearing, km)
            if inside is None:
                ok = np.ones(len(pending), dtype=bool)
            else:
                ok = np.array(
                    [inside(a, b, region[i]) for a, b, i in zip(la, lo, pending, strict=True)],
                    dtype=bool,
                )
            done = pending[ok]
            lat1[done], lon1[done], dist[done] = la[ok], lo[ok], km[ok]
            pending = pending[~ok]
        if not len(pending):
            break
    return lat1, lon1, dist, cap, pending


def displace(
    points: pd.DataFrame,
    *,
    inside: Inside | None = None,
    regions: Mapping[Hashable, Polygon | Sequence[Polygon]] | None = None,
    rng: np.random.Generator | None = None,
    max_tries: int = 50,
    audit: bool = False,
) -> pd.DataFrame:
    """Displace cluster points by the DHS rule; returns ``points`` with new lat and lon.

    ``rng`` defaults to a generator seeded from the operating system; never store a seed
    with a release, it would allow the displacement to be undone. With ``audit=True`` the
    result also has ``max_km``, ``distance_km`` and ``reduced`` (maximum halved to stay
    inside) for the restricted audit file; never release those columns.
    """
    if inside is not None and regions is not None:
        raise DhsurveyError("give either inside or regions, not both", code="gps-bad-point")
    if regions is not None:
        inside = polygon_inside(regions)
    rng = np.random.default_rng() if rng is None else rng
    clusters = _clusters(points)
    lat0 = clusters["lat"].to_numpy(dtype=np.float64)
    lon0 = clusters["lon"].to_numpy(dtype=np.float64)
    region = clusters["region"].to_numpy(dtype=object)
    if inside is not None:
        _check_own_points(clusters, lat0, lon0, region, inside)
    max_km = _max_distances(clusters["urban"].to_numpy(), rng)
    lat1, lon1, dist, cap, pending = _draw(lat0, lon0, region, max_km, inside, rng, max_tries)
    if len(pending):
        raise DhsurveyError(
            f"{len(pending)} cluster(s) could not be displaced inside their region even at "
            f"1/{2**MAX_HALVINGS} of the distance",
            code="gps-displacement-failed",
            cluster=str(clusters.loc[pending[0], "cluster"]),
        )
    moved = clusters[["cluster"]].assign(lat=lat1, lon=lon1)
    if audit:
        moved = moved.assign(max_km=max_km, distance_km=dist, reduced=cap < max_km)
    row_pos = pd.Index(clusters["cluster"]).get_indexer(points["cluster"])
    out = points.copy()
    for col in moved.columns.drop("cluster"):
        out[col] = moved[col].to_numpy()[row_pos]
    return out
