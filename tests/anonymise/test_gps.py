"""DHS GPS displacement: distance caps, the 1-in-100 rural rule, one move per cluster,
containment in the region."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dhsurvey.anonymise.gps import displace, haversine_km
from dhsurvey.errors import DhsurveyError


def _clusters(n_urban: int, n_rural: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_urban + n_rural
    return pd.DataFrame(
        {
            "cluster": np.arange(1, n + 1),
            "lat": rng.uniform(-1.0, 1.0, n),
            "lon": rng.uniform(36.0, 38.0, n),
            "urban": [True] * n_urban + [False] * n_rural,
            "region": "central",
        }
    )


def test_distances_within_dhs_bounds() -> None:
    pts = _clusters(400, 650)
    out = displace(pts, rng=np.random.default_rng(42), audit=True)
    d = haversine_km(pts["lat"], pts["lon"], out["lat"], out["lon"])
    np.testing.assert_allclose(d, out["distance_km"], atol=1e-6)
    urban = pts["urban"].to_numpy()
    assert (d[urban] <= 2.0 + 1e-9).all()
    assert (d[~urban] <= 10.0 + 1e-9).all()
    assert (out.loc[urban, "max_km"] == 2.0).all()
    # Every 100th rural cluster (in random order): floor(650 / 100) = 6 get 10 km, rest 5 km.
    far = out["max_km"] == 10.0
    assert int(far.sum()) == 6 and not (far & pts["urban"]).any()
    assert (out.loc[~urban & ~far, "max_km"] == 5.0).all()
    assert (d[~urban & ~far.to_numpy()] <= 5.0 + 1e-9).all()
    # Points do move, and use the range (uniform distance).
    assert d[~urban].max() > 4.0 and d[urban].max() > 1.5


def test_far_clusters_are_not_predictable() -> None:
    pts = _clusters(0, 300)
    a = displace(pts, rng=np.random.default_rng(1), audit=True)
    b = displace(pts, rng=np.random.default_rng(2), audit=True)
    assert int((a["max_km"] == 10).sum()) == int((b["max_km"] == 10).sum()) == 3
    assert set(a.index[a["max_km"] == 10]) != set(b.index[b["max_km"] == 10])


def test_one_displacement_per_cluster() -> None:
    clusters = _clusters(3, 3)
    households = clusters.loc[clusters.index.repeat(5)].reset_index(drop=True)
    households["hh"] = np.arange(len(households))
    out = displace(households, rng=np.random.default_rng(3))
    assert out["hh"].tolist() == households["hh"].tolist()  # other columns kept
    per_cluster = out.groupby("cluster")[["lat", "lon"]].nunique()
    assert (per_cluster == 1).all().all()
    assert out.groupby("cluster")["lat"].first().nunique() == 6
    moved = (out["lat"] != households["lat"]) | (out["lon"] != households["lon"])
    assert moved.all()


def test_inconsistent_cluster_rows_are_rejected() -> None:
    pts = _clusters(2, 0)
    pts.loc[1, "cluster"] = 1  # same cluster, different coordinates
    with pytest.raises(DhsurveyError) as err:
        displace(pts, rng=np.random.default_rng(0))
    assert err.value.code == "gps-inconsistent-cluster"


def _rectangle(lat0: float, lat1: float, lon0: float, lon1: float):
    def inside(lat: float, lon: float, region: object) -> bool:
        return region == "box" and lat0 <= lat <= lat1 and lon0 <= lon <= lon1

    return inside


def test_stays_inside_rectangle_region() -> None:
    # A strip 0.02 deg (~2.2 km) wide: rural moves of up to 5-10 km must be redrawn.
    rng = np.random.default_rng(5)
    n = 300
    pts = pd.DataFrame(
        {
            "cluster": range(n),
            "lat": rng.uniform(0.001, 0.019, n),
            "lon": rng.uniform(36.0, 37.0, n),
            "urban": rng.random(n) < 0.3,
            "region": "box",
        }
    )
    inside = _rectangle(0.0, 0.02, 35.9, 37.1)
    out = displace(pts, inside=inside, rng=np.random.default_rng(6), audit=True)
    assert all(inside(a, b, "box") for a, b in zip(out["lat"], out["lon"], strict=True))
    d = haversine_km(pts["lat"], pts["lon"], out["lat"], out["lon"])
    assert (d <= out["max_km"] + 1e-9).all()


def test_fallback_to_smaller_distance() -> None:
    # A border that refuses the first three draws: after max_tries=2 at 2 km, the cap halves.
    calls: list[tuple[float, float]] = []

    def inside(lat: float, lon: float, region: object) -> bool:
        calls.append((lat, lon))
        return len(calls) == 1 or len(calls) > 4  # call 1 checks the true point

    pts = pd.DataFrame(
        {"cluster": [1], "lat": [0.5], "lon": [36.5], "urban": [True], "region": ["box"]}
    )
    out = displace(pts, inside=inside, rng=np.random.default_rng(0), max_tries=2, audit=True)
    assert len(calls) == 5
    assert bool(out.loc[0, "reduced"])
    assert out.loc[0, "max_km"] == 2.0 and out.loc[0, "distance_km"] <= 1.0
    assert (out.loc[0, "lat"], out.loc[0, "lon"]) == calls[-1]


def test_displacement_failure_is_an_error() -> None:
    pts = pd.DataFrame(
        {"cluster": [1], "lat": [0.5], "lon": [36.5], "urban": [True], "region": ["box"]}
    )
    calls = []

    def only_true_point(lat: float, lon: float, region: object) -> bool:
        calls.append(1)
        return len(calls) == 1

    with pytest.raises(DhsurveyError) as err:
        displace(pts, inside=only_true_point, rng=np.random.default_rng(0), max_tries=2)
    assert err.value.code == "gps-displacement-failed"
    assert len(calls) == 1 + 2 * 4  # bounded: 4 distance stages of 2 tries


def test_region_polygons() -> None:
    square = [(0.0, 36.0), (0.0, 37.0), (1.0, 37.0), (1.0, 36.0)]
    pts = pd.DataFrame(
        {"cluster": [1, 2], "lat": [0.01, 0.99], "lon": [36.01, 36.99],
         "urban": [False, False], "region": ["sq", "sq"]}
    )
    out = displace(pts, regions={"sq": square}, rng=np.random.default_rng(9))
    assert out["lat"].between(0, 1).all() and out["lon"].between(36, 37).all()


def test_point_outside_its_region_is_an_error() -> None:
    pts = pd.DataFrame(
        {"cluster": [1], "lat": [5.0], "lon": [36.5], "urban": [True], "region": ["box"]}
    )
    with pytest.raises(DhsurveyError) as err:
        displace(pts, inside=_rectangle(0, 1, 36, 37), rng=np.random.default_rng(0))
    assert err.value.code == "gps-outside-region"


def test_missing_columns() -> None:
    with pytest.raises(DhsurveyError) as err:
        displace(pd.DataFrame({"cluster": [1], "lat": [0.0]}))
    assert err.value.code == "gps-column-missing"
