"""The HTML report (also of a run still being written), the notebook tables and the NWB export,
checked with pynwb read-back and nwbinspector; audio neurons through the tuning protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import Field
from tqdm import tqdm

from closedloop import protocol as protocol_module
from closedloop.analysis import analyze
from closedloop.cli import main
from closedloop.component import Settings
from closedloop.neurons.base import Neuron, Trials, interleaved_order
from closedloop.recording import open_run
from closedloop.registry import register

pynwb = pytest.importorskip("pynwb")
nwbinspector = pytest.importorskip("nwbinspector")

SMALL_TUNING = {"kind": "tuning", "seed": 1, "neuron": {"kind": "spiking", "size": 16},
                "orientations": 6, "spatial_frequencies": [0.15], "phases": 4, "repeats": 2}


class ToneSettings(Settings):
    best_frequency: float = Field(1000.0, gt=0)
    octave_width: float = Field(0.4, gt=0)
    samples: int = 1600


@register("neuron", "test_tone")
class ToneNeuron(Neuron):
    """An auditory unit: Poisson counts at a rate set by the spectral power under a Gaussian in
    log frequency."""

    Config = ToneSettings
    modality = "audio"
    sample_rate = 16000
    value_range = (-1.0, 1.0)

    def __init__(self, config, seed):
        super().__init__(config, seed)
        self.stimulus_shape = (config.samples,)
        frequency = np.fft.rfftfreq(config.samples, 1 / self.sample_rate)
        octaves = np.log2(np.maximum(frequency, 1.0) / config.best_frequency)
        self.weights = np.exp(-octaves**2 / (2 * config.octave_width**2))
        self.clock, self.calls = 0.0, 0

    def present(self, stimuli, repeats):
        power = np.abs(np.fft.rfft(np.asarray(stimuli), axis=1)) ** 2 / self.config.samples
        rate = 0.5 + power @ self.weights
        rng = self.rng(self.calls)
        self.calls += 1
        slot = interleaved_order(len(stimuli), repeats, rng)
        t_start = self.clock + slot * 0.2
        self.clock += slot.size * 0.2
        clean = np.repeat(rate[:, None], repeats, axis=1)
        counts = rng.poisson(clean)
        spikes = [np.sort(rng.uniform(0, 0.1, c)) for c in counts.ravel()]
        return Trials(responses=counts, t_start=t_start, clean=clean, spike_times=spikes)


def run(tmp_path, data, name="run"):
    protocol = protocol_module.from_dict(data, f"{name}.yaml")
    path = tmp_path / f"{name}.h5"
    assert protocol.experiment_cls(protocol).run(path, progress=False)["status"] == "complete"
    return path


def inspect(path):
    """nwbinspector messages at the critical and best-practice-violation levels."""
    from nwbinspector import Importance, inspect_nwbfile

    return [m for m in inspect_nwbfile(nwbfile_path=str(path))
            if m.importance in (Importance.CRITICAL, Importance.BEST_PRACTICE_VIOLATION)]


def test_report_embeds_figures_protocol_and_numbers(tmp_path):
    path = run(tmp_path, SMALL_TUNING)
    numbers = analyze(path)
    report = path.with_suffix(".html")
    assert numbers["report"] == str(report)
    text = report.read_text()
    assert text.count('src="data:image/png;base64,') == 1
    assert "orientations: 6" in text  # the protocol
    assert "preferred_orientation" in text and f"{numbers['preferred_orientation']:.4g}" in text
    assert "<script" not in text and "http" not in text.split("<h2>Configuration")[0]  # self-contained


def test_report_of_a_run_still_being_written(tmp_path):
    protocol = protocol_module.from_dict({**SMALL_TUNING, "batch": 24}, "t.yaml")
    experiment = protocol.experiment_cls(protocol)
    path = tmp_path / "live.h5"
    writer = experiment.open_log(path)
    experiment.bar = tqdm(disable=True)
    try:
        index = writer.add_stimuli(experiment.grid, 0, experiment.stimuli)
        experiment.present(writer, index, experiment.stimuli, 1, 0, np.random.default_rng(0))
        numbers = analyze(path)
        assert numbers["status"] == "running"
        assert numbers["presentations"] == 24
        assert "still being written" in path.with_suffix(".html").read_text()
    finally:
        writer.close()


def test_export_passes_nwbinspector_and_reads_back(tmp_path):
    path = run(tmp_path, SMALL_TUNING)
    out = tmp_path / "run.nwb"
    assert main(["export", str(path), str(out)]) == 0
    assert inspect(out) == []
    with open_run(path) as log:
        trials, expected_spikes = log.trials, int(log.trials["spike_count"].sum())
    with pynwb.NWBHDF5IO(str(out), "r") as io:
        nwb = io.read()
        table = nwb.trials.to_dataframe()
        assert len(table) == len(trials) == 6 * 4 * 2
        assert {"orientation", "spatial_frequency", "phase", "response", "drive"} <= set(table.columns)
        assert (table["stop_time"] > table["start_time"]).all()
        assert len(nwb.units["spike_times"][0]) == expected_spikes
        frames = nwb.stimulus["presented_images"].data[()]
        assert frames.shape == (len(trials), 16, 16)
        # the frame of a trial is the stimulus its row names
        with open_run(path) as log:
            row = table.iloc[5]
            np.testing.assert_allclose(frames[5], log.rendered([int(row["stimulus"])])[0], atol=1e-6)
    assert main(["export", str(path), str(out)]) != 0  # never overwrites silently


def test_audio_tuning_finds_the_best_frequency_and_exports(tmp_path):
    path = run(tmp_path, {"kind": "tuning", "seed": 2, "neuron": {"kind": "test_tone", "best_frequency": 1000},
                          "frequencies": 13, "frequency_range": [250, 4000], "levels": [-30, -10], "repeats": 4})
    numbers = analyze(path)
    assert abs(np.log2(numbers["preferred_frequency"] / 1000)) < 0.25
    assert numbers["preferred_level"] == -10
    out = tmp_path / "audio.nwb"
    assert main(["export", str(path), str(out)]) == 0
    assert inspect(out) == []
    with pynwb.NWBHDF5IO(str(out), "r") as io:
        sounds = io.read().stimulus["presented_sounds"]
        assert sounds.rate == 16000
        assert np.abs(sounds.data[()]).max() == pytest.approx(10 ** (-10 / 20), rel=0.01)


def fixture_log(protocol_path):
    """The short log of a shipped protocol (tests/fixtures/logs); of a sweep, its first run."""
    logs = Path(__file__).parent / "fixtures" / "logs"
    folder = logs / protocol_path.stem
    return sorted(folder.glob("*.h5"))[0] if folder.is_dir() else logs / f"{protocol_path.stem}.h5"


@pytest.mark.slow
@pytest.mark.parametrize("protocol_path", sorted((Path(__file__).parents[1] / "protocols").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_every_shipped_protocol_exports_nwb_that_dandi_accepts(protocol_path, tmp_path):
    from nwbinspector import inspect_nwbfile, load_config

    out = tmp_path / "run.nwb"
    assert main(["export", str(fixture_log(protocol_path)), str(out), "--experimenter", "Doe, Jane",
                 "--institution", "Closed Loop Lab", "--subject-id", "cell-1"]) == 0
    messages = [f"{m.check_function_name}: {m.message}" for m in
                inspect_nwbfile(nwbfile_path=str(out), config=load_config("dandi"))]
    assert messages == []
    with pynwb.NWBHDF5IO(str(out), "r") as io:
        nwb = io.read()
        assert nwb.subject.subject_id == "cell-1" and nwb.experimenter == ("Doe, Jane",)
        assert len(nwb.stimulus) + len(nwb.stimulus_template) == 1  # the stimuli, also when only latents were logged
        table = nwb.trials.to_dataframe()
        for name in table.columns:  # no column that holds nothing
            assert not (table[name].dtype.kind == "f" and table[name].isna().all()), name
            assert name != "spike_count" or table[name].sum() > 0
        for column in nwb.trials.columns[2:]:
            assert ", unit: " in column.description, column.name
