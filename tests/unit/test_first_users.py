"""What a first user trips over: synthetic results that pass for NASA's, and silent surprises
(swapped corners, a repeated option, a body whose bad fields are named a few at a time)."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from cli.command import MODE_MARKER, UsageError, _claim_folder, main
from core.config import Settings
from core.manifest import DateManifest
from core.products.attributes import SYNTHETIC_TITLE_PREFIX, mark_synthetic
from core.request import ColocationRequest, error_fields, parse_request

SEED = {"bbox": [-62.8, 81.7, -56.4, 83.0], "date": "2019-06-22"}
SANDBOX = Settings().replace(data_mode="synthetic")


def test_a_synthetic_request_never_gets_the_real_request_id():
    real, synthetic = parse_request(SEED, Settings()), parse_request(SEED, SANDBOX)
    assert real.request_id() != synthetic.request_id()
    assert "data_mode" not in real.canonical()  # the real id is the one it always was
    assert synthetic.canonical()["data_mode"] == "synthetic"
    # a caller cannot claim either mode: the service's settings decide
    assert parse_request({**SEED, "data_mode": "synthetic"}, Settings()).request_id() == real.request_id()
    # the Map item carries the mode to the date tasks
    assert ColocationRequest.model_validate(synthetic.canonical()).request_id() == synthetic.request_id()


def test_synthetic_marks_title_and_attribute_once_and_manifest_defaults_to_real():
    attrs = mark_synthetic(mark_synthetic({"title": "ATL07 x SST"}, "synthetic"), "synthetic")
    assert attrs["title"] == SYNTHETIC_TITLE_PREFIX + "ATL07 x SST" and attrs["data_mode"] == "synthetic"
    assert mark_synthetic({"title": "ATL07 x SST"}, None) == {"title": "ATL07 x SST"}
    assert DateManifest.model_validate({"date": "2019-06-22"}).data_mode == "real"  # an older manifest


def test_real_and_synthetic_results_never_share_a_folder(tmp_path):
    _claim_folder(tmp_path / "out", "synthetic")
    assert (tmp_path / "out" / MODE_MARKER).read_text().strip() == "synthetic"
    _claim_folder(tmp_path / "out", "synthetic")  # the same mode again: fine
    with pytest.raises(UsageError, match="--out: .* holds synthetic results .*give another folder for real"):
        _claim_folder(tmp_path / "out", "real")


@pytest.mark.parametrize("bbox", [[-56.4, 81.7, -62.8, 83.0], [10, 60, -10, 80]])
def test_swapped_corners_are_refused_with_the_fix(bbox):
    with pytest.raises(ValidationError) as exc:
        parse_request({**SEED, "bbox": bbox})
    (error,) = error_fields(exc.value)
    assert error["field"] == "bbox" and "west first" in error["message"] and "-180," in error["message"]


def test_a_narrow_box_across_the_antimeridian_is_still_accepted():
    assert parse_request({**SEED, "bbox": [170, -78, -170, -60]}).bbox == (170.0, -78.0, -170.0, -60.0)


def test_every_bad_field_of_a_body_is_named_at_once():
    body = {"bbox": [1, 2], "date": "2019-06-22", "start": "2019-06-22", "radius_m": -5, "foo": 1}
    with pytest.raises(ValidationError) as exc:
        ColocationRequest.model_validate(body)
    fields = {e["field"]: e["message"] for e in error_fields(exc.value)}
    assert set(fields) == {"bbox", "date", "radius_m", "foo"}
    # the field is named once: beside the message, not again inside it
    assert fields["radius_m"].startswith("must be") and fields["bbox"].startswith("must have")


def _colocate_run(argv: list[str]) -> int:
    try:
        return main(["run", "--bbox", "-62.8,81.7,-56.4,83", *argv])
    except SystemExit as exc:  # argparse's own errors (a repeated option) exit
        return int(exc.code or 0)


@pytest.mark.parametrize(("argv", "needle"), [
    (["--date", "2019-06-22", "--date", "2019-06-23"], "--date given twice: give it once"),
    (["--date", "2019-06-22", "--radius-m", "500", "--radius-m", "900"], "--radius-m given twice"),
    (["--date", "2019-06-22", "--radius-m", "60000"], "colocate: error: --radius-m: must be greater than 0"),
])
def test_cli_repeated_option_and_field_named_once(tmp_path, capsys, argv, needle):
    assert _colocate_run([*argv, "--out", str(tmp_path / "o")]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_the_progress_bar_names_every_pipeline_stage_in_words():
    """Every stage the pipeline times (core.pipeline's ``timer("…")``) has a label of its own."""
    import re
    from pathlib import Path

    from cli.progress import STAGES, stage_label

    src = Path(__file__).resolve().parents[2] / "src" / "core"
    names = {m for path in src.rglob("*.py") for m in re.findall(r'timer\("(\w+)"\)', path.read_text())}
    assert names and names <= set(STAGES), names - set(STAGES)
    assert stage_label("quicklook_draw") == "quicklook draw" and stage_label("sst_x") == "L2P x"


def test_a_synthetic_product_s_quicklook_says_so(tmp_path):
    """The PNG of a synthetic product carries a red SYNTHETIC mark a real one does not."""
    import numpy as np
    from PIL import Image

    from core.products.granule_netcdf import build_dataset
    from core.products.quicklook import render_quicklook
    from tests.product_fixtures import PARAMS, seed_scene

    tracks, swaths = seed_scene(n=400)
    real = build_dataset(tracks, [s.granule for s in swaths], PARAMS)
    synthetic = build_dataset(tracks, [s.granule for s in swaths], {**PARAMS, "data_mode": "synthetic"})
    assert synthetic.attrs["title"].startswith(SYNTHETIC_TITLE_PREFIX) and "data_mode" not in real.attrs

    def reddish(ds, name) -> int:
        rgb = np.asarray(Image.open(render_quicklook(ds, tmp_path / name)).convert("RGB")).astype(int)
        return int(((rgb[..., 0] > 200) & (rgb[..., 1] < 190) & (rgb[..., 2] < 190)).sum())

    assert reddish(synthetic, "s.png") > reddish(real, "r.png") + 1000
