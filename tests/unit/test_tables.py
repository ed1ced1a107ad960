"""One schema (core.products.tables) for the Glue table in template.yaml and the Parquet files'
field metadata; the files read back typed as the Glue table says, by pyarrow, DuckDB and pandas."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from core.products.granule_netcdf import build_dataset
from core.products.request_outputs import glue_columns, matches_frame, segments_frame, write_request_products
from core.products.tables import GLUE_COMMENT_MAX, MATCHES, TABLES, regenerate
from core.results import LocalOutputStore
from tests.deploy_fixtures import sam_template
from tests.product_fixtures import PARAMS, every_field_pairing, seed_scene

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
# Glue/Athena (Hive) type -> the Arrow type a reader of the Parquet files gets
ARROW = {"string": (pa.string(), pa.large_string()), "int": (pa.int32(),), "smallint": (pa.int16(),),
         "tinyint": (pa.int8(),), "bigint": (pa.int64(),), "float": (pa.float32(),), "double": (pa.float64(),),
         "timestamp": (pa.timestamp("us", tz="UTC"),), "date": (pa.date32(),)}
DUCKDB = {"string": "VARCHAR", "int": "INTEGER", "smallint": "SMALLINT", "tinyint": "TINYINT", "bigint": "BIGINT",
          "float": "FLOAT", "double": "DOUBLE", "timestamp": "TIMESTAMP WITH TIME ZONE", "date": "DATE"}


def glue_table(resource: str = "MatchesTable") -> tuple[list[dict], list[dict]]:
    table = sam_template()["Resources"][resource]["Properties"]["TableInput"]
    return table["StorageDescriptor"]["Columns"], table["PartitionKeys"]


def test_template_yaml_is_generated_from_the_schema():
    text = (REPO / "template.yaml").read_text()
    assert regenerate(text) == text, "run: python -m core.products.tables template.yaml"
    for table in TABLES:
        columns, partitions = glue_table(table.resource)
        assert [(c["Name"], c["Type"], c["Comment"]) for c in columns] == [
            (c.name, c.type, c.comment()) for c in table.columns]
        assert [(c["Name"], c["Type"]) for c in partitions] == [(c.name, c.type) for c in table.partitions]
        assert all(len(c["Comment"]) <= GLUE_COMMENT_MAX for c in columns + partitions)
        assert not {c.name for c in table.columns} & {c.name for c in table.partitions}


def test_every_schema_column_is_one_a_product_can_have_and_back(tmp_path):
    """No Glue column that no file has, no file column that the schema does not describe, same types
    (ATL07 v006's two ice concentrations; v003-v005's single one)."""
    found: set[tuple[str, str]] = set()
    for v006 in (True, False):
        (tmp_path / str(v006)).mkdir()
        pairing, params = every_field_pairing(tmp_path / str(v006), ice_conc_v006=v006)
        found |= set(glue_columns(matches_frame(build_dataset(pairing.tracks, pairing.source_info(), params,
                                                              now=NOW))))
    assert sorted(found) == sorted((c.name, c.type) for c in MATCHES.columns)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A request's Parquet written where the service writes it (the store's partition layout)."""
    tmp = tmp_path_factory.mktemp("tables")
    tracks, swaths = seed_scene(n=800)
    ds = build_dataset(tracks, [s.granule for s in swaths], PARAMS, request_id="rtest", now=NOW)
    store = LocalOutputStore(tmp, "colocations")
    parquet = store.path(store.parquet_prefix("rtest").rstrip("/"))
    write_request_products([("2019-06-22", [ds])], tmp / "r.nc", parquet, request_id="rtest")
    return store.path("colocations/rtest/parquet"), ds


def test_parquet_fields_carry_units_and_descriptions_and_utc_time(written):
    root, _ = written
    (part,) = root.rglob("*.parquet")
    schema = pq.read_schema(part)
    assert schema.field("time").type == pa.timestamp("us", tz="UTC")  # isAdjustedToUTC
    meta = json.loads(schema.metadata[b"PANDAS_ATTRS"])["columns"]
    assert meta["sst"] == {"description": MATCHES.column("sst").description, "units": "K"}
    assert set(meta) == set(schema.names) - {"__index_level_0__"}
    import pandas as pd

    assert pd.read_parquet(part).attrs["columns"]["lat"]["units"] == "degrees_north"


def test_pyarrow_and_duckdb_read_the_partitions_as_the_glue_table_types_them(written):
    root, _ = written
    columns, partitions = glue_table()
    glue = {c["Name"]: c["Type"] for c in columns + partitions}
    # pyarrow, with the partitioning the Glue table declares
    part_schema = pa.schema([(p["Name"], ARROW[p["Type"]][0]) for p in partitions])
    table = pads.dataset(root, format="parquet", partitioning=pads.partitioning(part_schema, flavor="hive")).to_table()
    assert set(table.column("request_id").to_pylist()) == {"rtest"}
    assert {str(d) for d in table.column("date").to_pylist()} == {"2019-06-22"}
    for field in table.schema:
        assert field.type in ARROW[glue[field.name]], (field.name, field.type, glue[field.name])
    # DuckDB infers the Hive partitions' types by itself: the same as the Glue table's
    rel = duckdb.sql(f"SELECT * FROM read_parquet('{root}/**/*.parquet', hive_partitioning = true)")
    types = dict(zip(rel.columns, (str(t) for t in rel.types), strict=True))
    assert {"request_id", "date", "time", "sst"} <= set(types) <= set(glue)
    assert {name: types[name] for name in types} == {name: DUCKDB[glue[name]] for name in types}


def test_segments_frame_is_one_row_per_segment(written):
    _, ds = written
    frame = segments_frame(ds)
    assert len(frame) == ds.sizes["obs"] and frame["trajectory_id"].nunique() == ds.sizes["trajectory"]
    matched = frame["sst_source_name"].notna()
    assert matched.sum() == int((ds["sst_granule"].values >= 0).sum()) == len(matches_frame(ds))


def test_the_sandbox_names_the_athena_table_the_template_deploys():
    from sandbox.deployment import ATHENA_ENVIRONMENT

    template = sam_template()
    assert ATHENA_ENVIRONMENT["ATHENA_DATABASE"] == template["Parameters"]["AthenaDatabaseName"]["Default"]
    assert ATHENA_ENVIRONMENT["ATHENA_TABLE"] == MATCHES.name == template["Resources"][MATCHES.resource][
        "Properties"]["TableInput"]["Name"]
