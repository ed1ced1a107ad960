"""ColocationRequest: parsing, normalisation, dates, ids, field-level errors (and a fuzzer)."""
from __future__ import annotations

import datetime as dt
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from pydantic import ValidationError

from core.config import Settings
from core.errors import InputError
from core.request import ColocationRequest, DateTask, error_fields, parse_request

SEED = {"bbox": [-62.8, 81.7, -56.4, 83], "date": "2019-06-22"}
FIELDS = set(ColocationRequest.model_fields) | {"request"}


def fields_of(data) -> list[dict]:
    with pytest.raises(ValidationError) as info:
        ColocationRequest.model_validate(data)
    return error_fields(info.value)


def test_seed_request_resolves_defaults_from_settings():
    s = Settings(radius_m=750.0, min_quality_level=5)
    r = parse_request(SEED, s)
    assert r.bbox == (-62.8, 81.7, -56.4, 83.0)
    assert r.dates() == [dt.date(2019, 6, 22)]
    assert (r.radius_m, r.min_quality_level, r.max_dt_s) == (750.0, 5, s.max_dt_s)
    assert (r.atl07_collection, r.sst_collection) == (s.atl07_collection, s.sst_collection)
    assert r.is_resolved
    # explicit values win over settings
    assert parse_request({**SEED, "radius_m": 500}, s).radius_m == 500.0


def test_request_id_is_deterministic_and_normalised():
    s = Settings()
    a = parse_request(SEED, s).request_id()
    same = [
        {"bbox": [-62.8, 81.7, -56.4, 83.0], "date": "2019-06-22"},
        {"date": " 2019-06-22 ", "bbox": (-62.8, 81.7, -56.4, 83)},
        {**SEED, "radius_m": s.radius_m, "min_quality_level": s.min_quality_level},
    ]
    assert {parse_request(x, s).request_id() for x in same} == {a}
    different = [
        {**SEED, "date": "2019-06-23"},
        {**SEED, "radius_m": 999.0},
        {**SEED, "bbox": [-62.8, 81.7, -56.4, 83.1]},
    ]
    assert len({parse_request(x, s).request_id() for x in different} | {a}) == 4
    # a changed default changes the identity of a request that relied on it
    assert parse_request(SEED, Settings(radius_m=2000.0)).request_id() != a
    # the id survives the Step Functions round trip
    r = parse_request(SEED, s)
    assert DateTask.from_item(json.loads(json.dumps(DateTask(r, r.dates()[0]).to_item()))).request_id == a


def test_zero_and_negative_zero_hash_alike():
    s = Settings()
    a = parse_request({"bbox": [0.0, -10, 5, 10], "date": "2020-01-01"}, s)
    b = parse_request({"bbox": [-0.0, -10, 5, 10], "date": "2020-01-01"}, s)
    assert a.request_id() == b.request_id()


@pytest.mark.parametrize(
    "start,end,expected",
    [
        ("2019-06-22", "2019-06-24", ["2019-06-22", "2019-06-23", "2019-06-24"]),  # bare end = whole day
        ("2019-06-22T12:00:00Z", "2019-06-23T00:00:00Z", ["2019-06-22"]),  # midnight end excluded
        ("2019-06-22T23:30:00-02:00", "2019-06-23T03:00:00+00:00", ["2019-06-23"]),  # zones → UTC
        ("2019-06-22T10:00:00", "2019-06-22T10:00:00", ["2019-06-22"]),  # naive = UTC, instant
        ("2019-12-31T22:00:00Z", "2020-01-01T01:00:00Z", ["2019-12-31", "2020-01-01"]),
    ],
)
def test_dates_of_a_range(start, end, expected):
    r = ColocationRequest.model_validate({"bbox": [0, 0, 1, 1], "start": start, "end": end})
    assert [d.isoformat() for d in r.dates()] == expected
    lo, hi = r.window()
    assert lo.tzinfo is not None and lo <= hi
    for d in r.dates():  # each day's window stays within the day and the request
        a, b = r.window(d)
        assert a.date() == d == b.date() and lo <= a <= b <= hi


def test_antimeridian_and_southern_bboxes_are_valid():
    r = ColocationRequest.model_validate({"bbox": [170, -78, -170, -60], "date": "2019-06-22"})
    assert r.bounding_box.crosses_antimeridian


@pytest.mark.parametrize(
    "data,field",
    [
        ({"bbox": [1, 2, 3], "date": "2019-06-22"}, "bbox"),
        ({"bbox": [1, 2, 3, 4, 5], "date": "2019-06-22"}, "bbox"),
        ({"bbox": "1,2,3,4", "date": "2019-06-22"}, "bbox"),
        ({"bbox": [1, "2", 3, 4], "date": "2019-06-22"}, "bbox"),
        ({"bbox": [1, True, 3, 4], "date": "2019-06-22"}, "bbox"),
        ({"bbox": [1, 2, 3, math.nan], "date": "2019-06-22"}, "bbox"),
        ({"bbox": [1, 2, math.inf, 4], "date": "2019-06-22"}, "bbox"),
        ({"bbox": [-181, 2, 3, 4], "date": "2019-06-22"}, "bbox"),
        ({"bbox": [1, -91, 3, 4], "date": "2019-06-22"}, "bbox"),
        ({"bbox": [1, 10, 3, 5], "date": "2019-06-22"}, "bbox"),  # S > N
        ({"bbox": [3, 1, 3, 5], "date": "2019-06-22"}, "bbox"),  # zero width
        ({"date": "2019-06-22"}, "bbox"),
        ({"bbox": [1, 2, 3, 4]}, "date"),
        ({"bbox": [1, 2, 3, 4], "date": "22/06/2019"}, "date"),
        ({"bbox": [1, 2, 3, 4], "date": "2019-02-30"}, "date"),
        ({"bbox": [1, 2, 3, 4], "date": 20190622}, "date"),
        ({"bbox": [1, 2, 3, 4], "date": "2019-06-22", "start": "2019-06-22"}, "date"),
        ({"bbox": [1, 2, 3, 4], "start": "yesterday", "end": "2019-06-22"}, "start"),
        ({"bbox": [1, 2, 3, 4], "start": "2019-06-22"}, "end"),
        ({"bbox": [1, 2, 3, 4], "end": "2019-06-22"}, "start"),
        ({"bbox": [1, 2, 3, 4], "start": "2019-06-23", "end": "2019-06-22"}, "end"),
        ({"bbox": [1, 2, 3, 4], "start": "1990-01-01", "end": "2030-01-01"}, "end"),  # too long
        ({**SEED, "radius_m": 0}, "radius_m"),
        ({**SEED, "radius_m": -5}, "radius_m"),
        ({**SEED, "radius_m": 1e9}, "radius_m"),
        ({**SEED, "radius_m": "1000"}, "radius_m"),
        ({**SEED, "max_dt_s": -1}, "max_dt_s"),
        ({**SEED, "max_dt_s": 1e12}, "max_dt_s"),
        ({**SEED, "min_quality_level": 6}, "min_quality_level"),
        ({**SEED, "min_quality_level": 2.5}, "min_quality_level"),
        ({**SEED, "sst_collection": "not a collection!"}, "sst_collection"),
        ({**SEED, "atl07_collection": "c123-nsidc"}, "atl07_collection"),
        ({**SEED, "token": "abc"}, "token"),  # extra fields forbidden: credentials never travel
        ([], "request"),
        ("bbox", "request"),
    ],
)
def test_bad_input_names_the_field(data, field):
    errors = fields_of(data)
    assert field in {e["field"] for e in errors}, errors
    for e in errors:
        assert e["message"] and "Traceback" not in e["message"]


def test_collections_accept_concept_ids_and_short_names():
    for c in ("C1940473819-POCLOUD", "C2003771980-NSIDC_ECS", "MODIS_A-JPL-L2P-v2019.0", "ATL07.006"):
        assert ColocationRequest.model_validate({**SEED, "sst_collection": c}).sst_collection == c


def test_errors_do_not_echo_huge_input():
    blob = "x" * 100_000
    errors = fields_of({**SEED, "sst_collection": blob, "start": blob})
    assert len(json.dumps(errors)) < 2000


def test_settings_max_dates_applies_at_resolve():
    r = ColocationRequest.model_validate({"bbox": [0, 0, 1, 1], "start": "2019-01-01", "end": "2019-01-10"})
    with pytest.raises(InputError) as info:
        r.resolve(Settings(max_dates=5))
    assert error_fields(info.value)[0]["field"] == "end"


def test_task_item_date_must_belong_to_request():
    r = parse_request(SEED, Settings())
    item = DateTask(r, r.dates()[0]).to_item()
    with pytest.raises(InputError):
        DateTask.from_item({**item, "date": "2019-06-23"})
    with pytest.raises(ValidationError):
        DateTask.from_item({**item, "extra": 1})


# ---- fuzzing: any JSON-ish input either parses or yields field-named errors, never a crash ----
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10**20, max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.dates().map(str), st.datetimes().map(lambda d: d.isoformat()),
)
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=6) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=12)
bbox_like = st.lists(st.one_of(st.floats(-200, 200), st.integers(-200, 200), json_scalars), min_size=0, max_size=6)
request_like = st.fixed_dictionaries(
    {},
    optional={
        "bbox": bbox_like, "date": json_scalars, "start": json_scalars, "end": json_scalars,
        "radius_m": json_scalars, "max_dt_s": json_scalars, "min_quality_level": json_scalars,
        "sst_collection": json_scalars, "atl07_collection": json_scalars, "junk": json_values,
    },
)

# Corpus of inputs that once broke (or nearly broke) the parser: keep them.
CORPUS = [
    {"bbox": [0, 0, 0, 0], "date": "2019-06-22"},
    {"bbox": [0, 0, 1, 1], "start": "0001-01-01", "end": "9999-12-31"},
    {"bbox": [0, 0, 1, 1], "start": "2019-01-01T00:00:00+14:00", "end": "2019-01-01T00:00:00-12:00"},
    {"bbox": [0, 0, 1, 1], "start": "9999-12-31T23:59:59-12:00", "end": "9999-12-31T23:59:59-12:00"},
    {"bbox": [10**400 if False else 1e308, 0, 1, 1], "date": "2019-06-22"},
    {"bbox": [None, None, None, None], "date": None},
    {"bbox": [0, 0, 1, 1], "date": "２０１９-06-22"},
]


def _check_total(data):
    try:
        r = ColocationRequest.model_validate(data)
    except ValidationError as exc:
        errors = error_fields(exc)
        # a field is a model field, or (for unknown fields) the caller's own key, truncated
        keys = {str(k)[:64] or "request" for k in data} if isinstance(data, dict) else set()
        assert errors and all(e["field"] in FIELDS | keys and e["message"] for e in errors), errors
        return
    r = r.resolve(Settings()) if len(r.dates()) <= Settings().max_dates else r
    assert r.dates() and r.request_id()
    w, s, e, n = r.bbox
    assert -90 <= s < n <= 90 and -180 <= w <= 180 and -180 <= e <= 180


@pytest.mark.parametrize("data", CORPUS)
def test_corpus(data):
    _check_total(data)


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request_like)
def test_fuzz_parsing_never_crashes(data):
    _check_total(data)


@hsettings(max_examples=100, deadline=None)
@given(json_values)
def test_fuzz_arbitrary_json_is_rejected_cleanly(data):
    _check_total(data)


def test_exclude_ice_is_a_science_parameter_whose_default_keeps_the_request_id():
    """exclude_ice: true reaches ColocationParams and changes the request id; false is the
    default and keeps the id of a request that does not name it; a non-boolean is refused."""
    s = Settings()
    plain, off, on = (parse_request({**SEED, **extra}, s) for extra in ({}, {"exclude_ice": False},
                                                                        {"exclude_ice": True}))
    assert plain.request_id() == off.request_id() != on.request_id()
    assert (plain.colocation_params().exclude_ice, on.colocation_params().exclude_ice) == (False, True)
    assert on.colocation_params().as_attrs()["exclude_ice"] is True
    assert [f["field"] for f in fields_of({**SEED, "exclude_ice": "yes"})] == ["exclude_ice"]
