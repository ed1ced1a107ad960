"""`make demo`'s outputs through the readers a user brings: xarray + cf_xarray, pandas through the
README's recipe, pyarrow and DuckDB against the Glue table of template.yaml.

The demo's own code path (sandbox.demo: the Lambda handler, then the request-level netCDF and
Parquet) on the cut seed scene without the network model: ~25 s, against ~2 min for the
full-size scene (tests/sandbox/test_demo_full_scale.py runs that one, marked slow).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import cf_xarray  # noqa: F401  (registers the .cf accessor)
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pytest
import xarray as xr

from core.products.request_outputs import segments_frame
from tests.sandbox_fixtures import scene_cache
from tests.unit.test_tables import ARROW, DUCKDB, glue_table

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo(tmp_path_factory, sandbox_scene):  # the cut scene, built once into the cache
    out = tmp_path_factory.mktemp("demo") / "demo-output"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLOC_", "AWS_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO)])  # this checkout's code
    run = subprocess.run([sys.executable, "-m", "sandbox.demo", "--out", str(out), "--cache", str(scene_cache()),
                          "--scene", "cut", "--network", "off"], cwd=REPO, capture_output=True, text=True,
                         timeout=900, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out, run.stdout


def test_demo_says_synthetic_and_how_to_query(demo):
    out, stdout = demo
    assert stdout.startswith("Starting the sandbox")
    assert "SYNTHETIC" in stdout and "query them:" in stdout and "read_parquet(" in stdout
    assert "deployed, Athena: SELECT" in stdout
    assert len(list(out.glob("r*_matches.nc"))) == 1 and list((out / "parquet").rglob("*.parquet"))


def test_xarray_and_cf_xarray_find_sst_by_standard_name_and_the_coordinates(demo):
    """cf_xarray: the SST by its standard name, and lat/lon/time by their CF roles."""
    out, _ = demo
    paths = sorted(out.glob("*_sst.nc")) + sorted(out.glob("*_matches.nc"))
    assert len(paths) == 3
    for path in paths:
        with xr.open_dataset(path) as ds:
            # by standard name: the match alone (the neighbourhood's statistics have cell_methods
            # and no standard name of their own)
            assert ds.cf["sea_surface_skin_temperature"].name == "sst", path.name
            assert ds.cf["sea_surface_skin_temperature"].attrs["units"] == "K"
            assert ds.cf["time"].name == "time"
            # two positions by CF role: the segment's and the matched pixel's centre
            assert set(ds.cf[["latitude"]].variables) >= {"lat"} and set(ds.cf[["longitude"]].variables) >= {"lon"}
            assert set(ds.cf[["latitude"]].variables) <= {"lat", "sst_pixel_lat", "time", "lon", "sst_pixel_lon"}
            assert np.issubdtype(ds.cf["time"].dtype, np.datetime64)
            assert ds.attrs["data_mode"] == "synthetic" and ds.attrs["title"].startswith("SYNTHETIC")


def test_pandas_through_the_readme_recipe_gives_one_row_per_segment(demo):
    out, _ = demo
    readme = (REPO / "README.md").read_text()
    recipe = re.search(r"One row per segment, in pandas:\s*```python\n(.*?)```", readme, re.S).group(1)
    product = max(out.glob("*_sst.nc"), key=lambda p: p.stat().st_size)
    namespace: dict = {}
    exec(recipe.replace("ATL07-01_20190622055317_12980301_007_01_sst.nc", str(product)), namespace)
    df, ds = namespace["df"], namespace["ds"]
    assert len(df) == ds.sizes["obs"] and df["trajectory_id"].nunique() == ds.sizes["trajectory"]
    assert {"sst", "lat", "lon", "time", "trajectory_id"} <= set(df.reset_index().columns)
    ours = segments_frame(ds)
    np.testing.assert_array_equal(ours["trajectory_id"].to_numpy(), df["trajectory_id"].to_numpy())
    np.testing.assert_array_equal(ours["sst"].to_numpy(), df["sst"].to_numpy())
    ds.close()


def test_pyarrow_and_duckdb_read_the_demo_parquet_as_the_glue_table_types_it(demo):
    out, _ = demo
    columns, partitions = glue_table()
    glue = {c["Name"]: c["Type"] for c in columns + partitions}
    part_schema = pa.schema([(p["Name"], ARROW[p["Type"]][0]) for p in partitions])
    table = pads.dataset(out / "parquet", format="parquet",
                         partitioning=pads.partitioning(part_schema, flavor="hive")).to_table()
    assert table.num_rows > 0 and {str(d) for d in table.column("date").to_pylist()} == {"2019-06-22"}
    for field in table.schema:
        assert field.type in ARROW[glue[field.name]], (field.name, field.type, glue[field.name])
    rel = duckdb.sql(f"SELECT * FROM read_parquet('{out}/parquet/**/*.parquet', hive_partitioning = true)")
    types = dict(zip(rel.columns, (str(t) for t in rel.types), strict=True))
    assert {"request_id", "date", "sst", "time"} <= set(types) <= set(glue)
    assert types == {name: DUCKDB[glue[name]] for name in types}
    with xr.open_dataset(next(out.glob("*_matches.nc"))) as req:
        rows = duckdb.sql(f"SELECT count(*) FROM read_parquet('{out}/parquet/**/*.parquet')").fetchall()
        assert rows == [(req.sizes["obs"],)]
