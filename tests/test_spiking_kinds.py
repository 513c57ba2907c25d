"""Front ends and cell models of the spiking neuron are registered kinds like any other (one module
each): a protocol names them the way it always did, and a misspelt field is answered with the
fields of the kind it names."""

import json
from pathlib import Path

import pytest

from closedloop import registry
from closedloop.cli import main
from closedloop.errors import ProtocolError
from closedloop.neurons.spiking import SpikingSettings
from closedloop.protocol import parse

QUICKSTART = str(Path(__file__).resolve().parents[1] / "protocols" / "quickstart.yaml")


@pytest.mark.parametrize("role, tag, package", [("front_end", "kind", "front_ends"), ("cell", "model", "cells")])
def test_each_kind_is_one_module_that_names_itself_by_its_tag(role, tag, package):
    ours = {name: module for name, module in registry.index(role).items() if module.startswith("closedloop.")}
    assert len(ours) >= 3
    for name, module in ours.items():
        assert module == f"closedloop.neurons.{package}.{name}"
        cls = registry.lookup(role, name)
        assert cls.Config.model_fields[tag].default == name  # logged configs keep their tag


@pytest.mark.parametrize("sets, expected", [
    (["neuron.front_end={kind: dog, sigma_centre: 2}"],
     "neuron.front_end.sigma_centre: unknown field; did you mean 'sigma_center'?"),
    # the quickstart's Gabor fields do not fit a dog: every unknown field is named, the typo's likely field too
    (["neuron.front_end.kind=dog", "neuron.front_end.sigma_centre=2"],
     "neuron.front_end: unknown fields orientation, spatial_frequency, sigma, sigma_centre; did you mean "
     "'sigma_center' for 'sigma_centre'? valid fields: center, kind, polarity, sigma_center, sigma_surround, "
     "surround_weight"),
    (["neuron.cell.model=adex", "neuron.cell.tau_ww=100"], "neuron.cell.tau_ww: unknown field; did you mean 'tau_w'?"),
    (["neuron.cell.model=adex", "neuron.cell.zzz=1"], "neuron.cell.zzz: unknown field; valid fields: a, b, bias, "
                                                      "capacitance, delta_t, e_leak, g_leak, gain, model, noise_sigma"),
    (["neuron.cell.tau_mm=5"], "neuron.cell.tau_mm: unknown field; did you mean 'tau_m'?"),
    (["neuron.front_end.kind=zebra"],
     "neuron.front_end: kind: unknown kind 'zebra' (one of: complex, dnn, dog, gabor, strf)"),
    (["neuron.cell.model=hodgkin"], "neuron.cell: model: unknown kind 'hodgkin'"),
])
def test_a_misspelt_field_is_answered_with_the_named_kinds_fields(tmp_path, capsys, sets, expected):
    out = tmp_path / "run.h5"
    code = main(["run", QUICKSTART, *[arg for item in sets for arg in ("--set", item)], "--out", str(out)])
    err = capsys.readouterr().err
    assert code == ProtocolError.exit_code
    assert expected in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_protocols_name_front_ends_and_cells_as_before_and_logged_configs_read_back():
    text = """kind: evolve
neuron:
  kind: spiking
  front_end: {kind: strf, duration: 0.1, best_frequency: 2000}
  cell: {model: custom, equations: 'dv/dt = (-v + 100*Mohm * (I_stim + I_noise)) / (10*ms) : volt',
         threshold: 'v > 15*mV + theta', reset: 'v = 0*mV'}
space: {kind: fourier}
optimizer: {kind: cmaes}
"""
    config = parse(text).sections["neuron"].config
    logged = config.model_dump(mode="json")
    assert logged["front_end"]["kind"] == "strf" and logged["front_end"]["best_frequency"] == 2000
    assert logged["cell"]["model"] == "custom" and logged["cell"]["reset"] == "v = 0*mV"
    again = SpikingSettings.model_validate(json.loads(json.dumps(logged)))
    assert again == config and type(again.cell) is type(config.cell)
    defaults = SpikingSettings().model_dump(mode="json")
    assert defaults["front_end"]["kind"] == "gabor" and defaults["cell"]["model"] == "lif"
