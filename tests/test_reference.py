"""The field reference and the JSON Schema are generated from the code: the committed page is not
stale, the schema accepts every shipped protocol and refuses mistakes, YAML words are words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from closedloop import protocol as protocol_module, reference
from closedloop.cli import main
from closedloop.errors import ProtocolError

ROOT = Path(__file__).resolve().parent.parent
jsonschema = pytest.importorskip("jsonschema")


def test_reference_page_is_up_to_date():
    page = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    assert page == reference.markdown(), "docs/reference.md is stale: closedloop fields --markdown > docs/reference.md"
    for role in ("experiment", "neuron", "space", "optimizer"):  # every kind has its section
        for name in reference.kinds(role):
            assert f"### `{name}`" in page


def test_fields_command_prints_one_kind_with_units_and_refuses_an_unknown(capsys):
    assert main(["fields", "tuning"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.strip().startswith("frequency_range"))
    assert "[200.0, 4000.0]" in row and " Hz " in row
    assert main(["fields", "dnn"]) == 0
    out = capsys.readouterr().out
    assert "weights" in out and " path " in out.split("weights", 1)[1].splitlines()[0]
    assert main(["fields", "fourer"]) == 2
    assert "did you mean 'fourier'" in capsys.readouterr().err


def test_schema_accepts_every_shipped_protocol_and_refuses_mistakes(tmp_path, capsys):
    out = tmp_path / "protocol.schema.json"
    assert main(["schema", str(out)]) == 0
    schema = json.loads(out.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    shipped = sorted((ROOT / "protocols").glob("*.yaml"))
    assert len(shipped) >= 10
    for path in shipped:
        errors = [e.message for e in validator.iter_errors(protocol_module.load_yaml(path.read_text()))]
        assert errors == [], f"{path.name}: {errors}"
    good = protocol_module.load_yaml((ROOT / "protocols" / "quickstart.yaml").read_text())
    for change in ({"generation": 3}, {"kind": "evolv"}, {"repeats": 0}, {"space": {"kind": "fourier", "size": "big"}},
                   {"neuron": {"kind": "spiking", "front_end": {"kind": "dog", "polarity": "sideways"}}}):
        assert not validator.is_valid({**good, **change}), change


def test_on_off_yes_no_are_words_and_true_for_a_word_says_quote_it():
    text = """kind: tuning
neuron: {kind: spiking, size: 8, reset_state: yes, front_end: {kind: dog, polarity: off, sigma_center: 1}}
orientations: 2
"""
    protocol = protocol_module.parse(text, "words.yaml")
    neuron = protocol.sections["neuron"].config
    assert neuron.front_end.polarity == "off" and neuron.reset_state is True
    with pytest.raises(ProtocolError, match="polarity: .*got True .*quote the word"):
        protocol_module.parse(text.replace("polarity: off", "polarity: true"), "words.yaml")
