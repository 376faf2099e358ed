"""The summary format is declared once (benchmark.summary): the engine can only write a summary with
exactly its fields, and a reader asking for a field it does not declare fails, `.get` included."""
from __future__ import annotations

import json

import pytest

from benchmark.config import validate
from benchmark.engine.cell import run_cell
from benchmark.errors import SummaryFormatError
from benchmark.grid import expand_cells
from benchmark.summary import FORMAT, Summary, as_summary, fields, read_summary, write_summary
from tests.conftest import tiny_grid


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict:
    """A summary as the engine writes it, for a one-epoch tiny cell."""
    tmp_path = tmp_path_factory.mktemp("summary")
    config = validate(tiny_grid(tmp_path, train={"epochs": 1, "batch_size": 2}))
    path = run_cell(config, next(iter(expand_cells(config))))
    return json.loads(path.read_text())


def test_the_engine_writes_every_declared_field_and_its_format(written):
    assert written["format"] == FORMAT
    assert tuple(written) == fields(Summary)
    record = as_summary(written)
    assert record["metrics"]["n_images"] == 2 and record["method"]["group"] == "baseline"


def test_a_reader_asking_for_an_undeclared_field_fails_with_the_known_fields(written):
    record = as_summary(written)
    with pytest.raises(SummaryFormatError, match=r"no field 'dice' in summary\.metrics; its fields: dice_mean"):
        record["metrics"]["dice"]
    with pytest.raises(SummaryFormatError, match="no field 'measurements' in summary"):
        record.get("measurements", {})
    with pytest.raises(SummaryFormatError, match="no field 'p95_mb'"):
        record["measured"]["step_memory"].get("p95_mb")
    assert record["method"].get("channels") == [8, 16, 32], "a method entry's hyper-parameters are open keys"


def test_the_writer_refuses_a_missing_or_undeclared_field(tmp_path, written):
    body = {key: value for key, value in written.items() if key != "format"}
    write_summary(tmp_path / "ok.json", body)
    assert read_summary(tmp_path / "ok.json") == written
    with pytest.raises(SummaryFormatError, match=r"summary: no field 'inference'"):
        write_summary(tmp_path / "missing.json", {k: v for k, v in body.items() if k != "inference"})
    with pytest.raises(SummaryFormatError, match=r"summary\.trained: undeclared field 'lr_chosen'"):
        write_summary(tmp_path / "extra.json", {**body, "trained": {**body["trained"], "lr_chosen": 1e-3}})
    assert not (tmp_path / "missing.json").exists() and not (tmp_path / "extra.json").exists()


def test_a_summary_of_an_unknown_format_version_is_refused(written):
    with pytest.raises(SummaryFormatError, match="format 99"):
        as_summary({**written, "format": 99})
    assert as_summary({k: v for k, v in written.items() if k != "format"})["cell"] == written["cell"], \
        "a summary written before the format had a version (format 1) has the same fields"
