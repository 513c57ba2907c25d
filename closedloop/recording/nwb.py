"""Export a run log to Neurodata Without Borders (NWB 2, via pynwb).

trials        one row per presentation: start/stop on the session clock, the log's trial
              columns (stimulus, generation, repeat, phase, response, clean), the neuron's
              state variables and, for parametric stimuli, their parameters
units         one unit, its spike times on the session clock, observed during the trials
stimulus      the stimuli as presented: an ImageSeries with one frame per trial (or the
              distinct images in an Images container when a frame series would be shorter than
              an image is wide), or for sounds one waveform on the session clock
The protocol text is the file's notes and the resolved configuration its data_collection.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from closedloop.errors import ClosedLoopError
from closedloop.recording.reader import open_run
from closedloop.recording.tables import parameter_names, trial_table

COLUMN_DESCRIPTIONS = {
    "stimulus": "index of the stimulus in the run log (row of /stimuli/z and of the stimulus images)",
    "generation": "generation (evolve) or call to the neuron (other protocols) of the presentation",
    "repeat": "repeat number of the stimulus within its call",
    "phase": "search, reference (re-shown to track drift) or retest",
    "response": "measured response",
    "clean": "noise-free expected response where the neuron knows it",
    "spike_count": "number of spikes in the presentation window",
    "log_row": "row of the trial in the closedloop run log",
}
MAX_AUDIO_SAMPLES = 50_000_000
SYNTHETIC = "http://purl.obolibrary.org/obo/NCBITaxon_32630"  # NCBI Taxonomy: "synthetic construct"


def presentation_seconds(run, starts: np.ndarray) -> float:
    """How long one presentation lasts: the neuron's window, a sound's length, or the spacing."""
    neuron = run.config.get("neuron", {})
    if isinstance(neuron.get("window"), (int, float)):
        return float(neuron["window"]) / 1000.0
    if run.modality == "audio" and run.sample_rate:
        return float(run.file.attrs["stimulus_shape"][0]) / run.sample_rate
    gaps = np.diff(np.unique(starts))
    return float(np.median(gaps)) if len(gaps) else 1.0


def export(run_path, nwb_path) -> dict:
    """Write `nwb_path` from the run log at `run_path`; returns what was written."""
    from hdmf.backends.hdf5.h5_utils import H5DataIO
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.epoch import TimeIntervals
    from pynwb.file import Subject
    from pynwb.misc import Units

    run_path, nwb_path = Path(run_path), Path(nwb_path)
    with open_run(run_path) as run:
        table = trial_table(run)
        table["log_row"] = np.arange(len(table))
        table = table.sort_values("t_start", kind="stable").reset_index(drop=True)
        if table.empty:
            raise ClosedLoopError(f"{run_path}: no trial logged; nothing to export")
        starts = table["t_start"].to_numpy(dtype=np.float64)
        duration = presentation_seconds(run, starts)
        created = datetime.fromisoformat(str(run.file.attrs["created"]))
        neuron = run.config.get("neuron", {})
        nwb = NWBFile(
            session_description=f"closedloop {run.kind} protocol on a simulated {neuron.get('kind', '?')} neuron",
            identifier=str(uuid.uuid5(uuid.NAMESPACE_URL, f"closedloop:{run_path.name}:{created.isoformat()}:{run.seed}")),
            session_start_time=created,
            experiment_description=f"closed-loop single-unit experiment, protocol kind {run.kind!r}, "
                                   f"run status {run.status}, seed {run.seed}",
            notes=run.protocol,
            data_collection=json.dumps(run.config, indent=1),
            keywords=["closedloop", "simulation", run.kind],
            trials=_trials(TimeIntervals, table, starts, duration, run),
            subject=Subject(
                subject_id=f"simulated-{neuron.get('kind', 'neuron')}", species=SYNTHETIC, sex="U",
                date_of_birth=created,
                description=f"a simulated neuron (closedloop neuron kind {neuron.get('kind', '?')!r}), not an "
                            "animal: species is NCBI Taxonomy's 'synthetic construct', born when the run started"),
        )
        written = {"trials": int(len(table)), "spikes": 0, "stimuli": "none"}
        spikes = _spike_times(run, table, starts)
        if spikes is not None:
            step = neuron.get("dt")  # ms: spike times fall on the simulation's time grid
            # without a time grid, the finest difference the stored (float64) times can express
            resolution = (float(step) / 1000.0 if isinstance(step, (int, float)) and step > 0
                          else float(np.spacing(max(1.0, float(spikes.max()) if len(spikes) else 1.0))))
            nwb.units = Units(name="units", description="the simulated neuron", resolution=resolution)
            nwb.add_unit_column("response_unit", "what the response column of the trials counts")
            nwb.add_unit(spike_times=spikes, obs_intervals=np.column_stack([starts, starts + duration]),
                         response_unit=run.response_unit)
            written["spikes"] = int(len(spikes))
        written["stimuli"] = _stimuli(nwb, run, table, starts, H5DataIO, TimeSeries)
        nwb_path.parent.mkdir(parents=True, exist_ok=True)
        partial = nwb_path.with_name(f".{nwb_path.stem}.part.nwb")  # a file at nwb_path is always whole
        try:
            with NWBHDF5IO(str(partial), "w") as io:
                io.write(nwb)
            os.replace(partial, nwb_path)
        finally:
            partial.unlink(missing_ok=True)
    return {"path": str(nwb_path), **written}


def _trials(TimeIntervals, table, starts, duration, run):
    frame = {"start_time": starts, "stop_time": starts + duration}
    for name in table.columns:
        if name in ("t_start", "spike_start"):
            continue
        values = table[name]
        if name == "phase":
            frame[name] = values.astype(str).to_numpy()
        elif values.dtype.kind == "f" and values.isna().all():
            continue  # e.g. `clean` for a neuron that does not know its noise-free response
        else:
            frame[name] = values.to_numpy()
    params = set(parameter_names(run))
    states = set(run.file["trials/state"])
    columns = [{"name": "start_time", "description": "onset of the presentation on the session clock (s)"},
               {"name": "stop_time", "description": "end of the presentation window (s)"}]
    for name in list(frame)[2:]:
        if name in COLUMN_DESCRIPTIONS:
            description = COLUMN_DESCRIPTIONS[name]
            if name == "response":
                description += f" ({run.response_unit})"
        elif name in params:
            description = f"stimulus parameter {name}"
        elif name in states:
            description = f"neuron state variable {name} at the presentation"
        else:
            description = name
        columns.append({"name": name, "description": description})
    return TimeIntervals.from_dataframe(pd.DataFrame(frame), name="trials", columns=columns,
                                        table_description=f"presentations of the {run.kind} protocol, in time order")


def _spike_times(run, table, starts):
    if int(table["spike_count"].sum()) == 0 and run.response_unit != "spikes":
        return None
    times = run.file["spikes/times"][()]
    chunks = [starts[k] + times[s:s + c] for k, (s, c) in enumerate(zip(table["spike_start"], table["spike_count"])) if c]
    return np.sort(np.concatenate(chunks)) if chunks else np.zeros(0)


def _stimuli(nwb, run, table, starts, H5DataIO, TimeSeries) -> str:
    if "rendered" not in run.file["stimuli"]:
        return "none (the run did not record its stimuli)"
    index = table["stimulus"].to_numpy()
    if run.modality == "audio":
        return _sounds(nwb, run, index, starts, H5DataIO, TimeSeries)
    from pynwb.image import GrayscaleImage, Images, ImageSeries, RGBImage

    distinct, inverse = np.unique(index, return_inverse=True)
    images = run.rendered(distinct).astype(np.float32)
    if images.ndim == 4:  # (n, C, H, W) -> (n, H, W, C); one channel is grayscale
        images = images[:, 0] if images.shape[1] == 1 else np.moveaxis(images, 1, -1)
    if len(index) >= max(images.shape[1:3]):
        nwb.add_stimulus(ImageSeries(
            name="presented_images", data=H5DataIO(images[inverse], compression="gzip"), **_timing(starts),
            unit="stimulus value", description="the stimulus of each trial, one frame per presentation, "
                                               "onset at the trial's start_time (luminance deviation or pixel value)"))
        return f"{len(index)} presented frames"
    kind = RGBImage if images.ndim == 4 else GrayscaleImage
    nwb.add_stimulus_template(Images(
        name="stimulus_images", description="the distinct stimuli shown; trials' stimulus column names them",
        images=[kind(name=f"stimulus_{s}", data=image, description=f"stimulus {s} of the run log")
                for s, image in zip(distinct, images)]))
    return f"{len(distinct)} distinct images"


def _timing(starts) -> dict:
    """A rate when presentations are evenly spaced (NWB prefers it), else timestamps."""
    gaps = np.diff(starts)
    if len(gaps) and gaps[0] > 0 and np.allclose(gaps, gaps[0], rtol=1e-9, atol=1e-12):
        return {"starting_time": float(starts[0]), "rate": float(1.0 / gaps[0])}
    return {"timestamps": starts}


def _sounds(nwb, run, index, starts, H5DataIO, TimeSeries) -> str:
    rate = run.sample_rate or 16000
    length = int(run.file.attrs["stimulus_shape"][0])
    origin = float(starts.min())
    total = int(round((starts.max() - origin) * rate)) + length
    if total > MAX_AUDIO_SAMPLES:
        return f"none (a session waveform of {total} samples would be too large)"
    distinct, inverse = np.unique(index, return_inverse=True)
    waves = run.rendered(distinct).astype(np.float32)
    track = np.zeros(total, dtype=np.float32)
    for k, start in enumerate(starts):
        at = int(round((start - origin) * rate))
        track[at:at + length] = waves[inverse[k]]
    nwb.add_stimulus(TimeSeries(
        name="presented_sounds", data=H5DataIO(track, compression="gzip"), rate=float(rate), starting_time=origin,
        unit="stimulus value", description="the sounds as presented on the session clock, silence between trials"))
    return f"{len(index)} presented sounds"
