"""`gradbench list`: every family and size with exact counts and bytes per dtype from a meta build, as an
aligned table or one JSON document; a family that cannot be built here is listed with null counts and why."""
import json
import sys

import pytest

from gradbench import catalog, models
from gradbench.cli import main
from gradbench.models import FAMILIES, Family, build_model, parameter_count
from gradbench.modes import MODES


def listed(capsys, *args) -> str:
    assert main(["list", *args]) == 0
    return capsys.readouterr().out


def test_json_lists_every_family_and_size_with_stable_keys(capsys):
    document = json.loads(listed(capsys, "--format", "json"))
    assert list(document) == ["families", "modes"]
    assert [f["name"] for f in document["families"]] == list(FAMILIES)
    for family in document["families"]:
        assert list(family) == ["name", "description", "inputs", "default", "source", "extra", "available", "needs",
                                "error", "sizes"]
        assert [s["size"] for s in family["sizes"]] == list(FAMILIES[family["name"]].sizes)
        for size in family["sizes"]:
            assert list(size) == ["size", "params", "param_bytes"]
            assert list(size["param_bytes"]) == ["float32", "bfloat16", "float16"]
    assert document["modes"] == [{"name": m.name, "description": m.description} for m in MODES.values()]
    toys = {f["name"]: f for f in document["families"][:3]}
    assert toys["transformer"]["inputs"] == "seq_len" and toys["transformer"]["default"] == 32
    assert toys["mlp"]["inputs"] is None and toys["mlp"]["default"] is None and toys["mlp"]["source"] == "gradbench"


def test_toy_counts_equal_a_real_build_and_bytes_are_params_times_element_size(capsys):
    document = json.loads(listed(capsys, "--format", "json"))
    for family in document["families"][:3]:  # the toys: every parameter is float
        assert family["available"] is True and family["needs"] is None and family["error"] is None
        for size in family["sizes"]:
            if size["size"] in ("tiny", "small"):  # a real build of these is small
                model, _ = build_model(family["name"], size["size"])
                assert size["params"] == parameter_count(model)
            assert size["param_bytes"] == {"float32": 4 * size["params"], "bfloat16": 2 * size["params"],
                                           "float16": 2 * size["params"]}
    assert document["families"][0]["sizes"][3]["params"] == 101_838_858  # mlp large, never built for real here


def test_the_table_puts_one_size_a_row_under_its_family_in_aligned_columns(capsys):
    lines = listed(capsys).splitlines()
    header = next(line for line in lines if line.strip().startswith("family"))
    mlp = lines.index(header) + 1
    assert lines[mlp].split()[:6] == ["mlp", "tiny", "102,250", "399.4", "KiB", "199.7"]
    assert lines[mlp + 1].split()[:2] == ["small", "983,146"] and lines[mlp + 1].startswith("   ")
    column = header.index("float32") + len("float32")  # numbers end under their heading
    assert lines[mlp][:column].endswith("399.4 KiB") and lines[mlp + 3][:column].endswith("388.5 MiB")
    assert "finetune_head" in "\n".join(lines) and "MODULE:FUNCTION" in "\n".join(lines)


def test_a_family_whose_extra_is_missing_is_listed_with_null_counts_and_the_command(capsys, monkeypatch):
    def build(size, seq_len=128):
        import transformers  # noqa: F401  (blocked below: what a machine without the extra sees)

    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.setattr(catalog, "_META", {})
    monkeypatch.setitem(models.FAMILIES, "fakezoo", Family("fakezoo", ("base", "large"), build, inputs="seq_len",
                                                           default_input=128, extra="zoo", source="transformers"))
    document = json.loads(listed(capsys, "--format", "json"))
    fake = document["families"][-1]
    assert fake["name"] == "fakezoo" and fake["available"] is False
    assert fake["needs"] == "pip install 'gradbench[zoo]'" and fake["error"] is None
    assert fake["sizes"] == [{"size": s, "params": None, "param_bytes": {"float32": None, "bfloat16": None,
                                                                         "float16": None}} for s in ("base", "large")]
    bert = next(f for f in document["families"] if f["name"] == "bert")  # the real family, transformers blocked
    assert bert["available"] is False and bert["needs"] == "pip install 'gradbench[zoo]'"
    assert {s["params"] for s in bert["sizes"]} == {None}
    assert next(f for f in document["families"] if f["name"] == "resnet")["available"] is True  # plain torch
    table = listed(capsys)
    row = next(line for line in table.splitlines() if line.strip().startswith("fakezoo"))
    assert row.split()[:7] == ["fakezoo", "base", "-", "-", "-", "-", "seq_len"]
    assert row.endswith("transformers  zoo (needs: pip install 'gradbench[zoo]')")
    assert "Traceback" not in table


def test_a_bad_format_is_argparses_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["list", "--format", "xml"])
    assert exit_info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == ["gradbench: error: argument --format: invalid choice: 'xml' (choose from 'table', 'json')"]


def test_a_run_of_a_family_whose_extra_is_missing_is_refused_before_any_worker(monkeypatch, tmp_path):
    """The same meta build checks a run's grid: one line, exit 2, not an error record per case."""
    from gradbench.cli import build_parser
    from gradbench.errors import BadInput
    from gradbench.settings import run_settings

    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.setattr(catalog, "_META", {})
    args = build_parser().parse_args(["run", "--models", "bert", "--sizes", "base", "--out", str(tmp_path / "r.jsonl")])
    with pytest.raises(BadInput, match=r"^model 'bert' needs: pip install 'gradbench\[zoo\]' \(no module named "
                                       r"'transformers'\)$"):
        run_settings(args)
