"""Export a run log to Neurodata Without Borders (NWB 2, via pynwb), as DANDI accepts it.

trials        one row per presentation: start/stop on the session clock, the log's trial
              columns (stimulus, generation, repeat, phase, response, clean), the neuron's
              state variables and, for parametric stimuli, their parameters; every column's
              description ends with its unit, and columns that hold nothing are left out
units         one unit, its spike times on the session clock, observed during the trials
              (spiking neurons only)
stimulus      the stimuli as presented (re-rendered from their latents when the log kept only
              those): an ImageSeries with one frame per trial (or the distinct images in an
              Images container when a frame series would be shorter than an image is wide), or
              for sounds one waveform on the session clock
The protocol text is the file's notes and the resolved configuration its data_collection.
`nwbinspector --config dandi` finds nothing to report when the experimenter and institution are given.
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


def export(run_path, nwb_path, experimenter: list[str] | None = None, institution: str | None = None,
           subject_id: str | None = None) -> dict:
    """Write `nwb_path` from the run log at `run_path`; returns what was written. DANDI asks
    for the `experimenter` ("Last, First") and the `institution`."""
    from hdmf.backends.hdf5.h5_utils import H5DataIO
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.epoch import TimeIntervals
    from pynwb.file import Subject
    from pynwb.misc import Units

    run_path, nwb_path = Path(run_path), Path(nwb_path)
    with open_run(run_path) as run:
        table = run.trials.copy()
        units = {**table.attrs["units"], "log_row": "1"}
        descriptions = {**table.attrs["descriptions"], "log_row": "row of the trial in the closedloop run log"}
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
            experimenter=list(experimenter) if experimenter else None,
            institution=institution,
            trials=_trials(TimeIntervals, table, starts, duration, run, units, descriptions),
            subject=Subject(
                subject_id=subject_id or f"simulated-{neuron.get('kind', 'neuron')}", species=SYNTHETIC, sex="U",
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


def _trials(TimeIntervals, table, starts, duration, run, units: dict, descriptions: dict):
    spiking = int(table["spike_count"].sum()) > 0 or run.response_unit == "spikes"
    frame = {"start_time": starts, "stop_time": starts + duration}
    columns = [{"name": "start_time", "description": "onset of the presentation on the session clock, unit: s"},
               {"name": "stop_time", "description": "end of the presentation window, unit: s"}]
    for name in table.columns:
        values = table[name]
        if name in ("t_start", "spike_start") or (name == "spike_count" and not spiking):
            continue  # the start is start_time; a spike's row is in the units table; no spikes: no counts
        if values.dtype.kind == "f" and values.isna().all():
            continue  # e.g. `clean` for a neuron that does not know its noise-free response
        if isinstance(values.dtype, pd.CategoricalDtype):
            frame[name] = values.astype(str).to_numpy()
            unit = "a category: " + ", ".join(map(str, values.cat.categories))
        else:
            frame[name] = _smallest(values.to_numpy())
            unit = _unit_text(units.get(name, "n/a"))
        columns.append({"name": name, "description": f"{descriptions.get(name, name)}, unit: {unit}"})
    return TimeIntervals.from_dataframe(pd.DataFrame(frame), name="trials", columns=columns,
                                        table_description=f"presentations of the {run.kind} protocol, in time order")


def _unit_text(unit: str) -> str:
    return {"1": "1 (dimensionless)", "n/a": "none (a code or a state without a unit)"}.get(unit, unit)


def _smallest(values: np.ndarray) -> np.ndarray:
    """Whole numbers (indices, spike counts, codes) in the smallest signed integer type that holds
    them: a 0/1 repeat column is int8, not a boolean in disguise."""
    if not len(values) or values.dtype.kind not in "iuf":
        return values
    if values.dtype.kind == "f" and not (np.isfinite(values).all() and np.array_equal(values, np.round(values))):
        return values
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= values.min() and values.max() <= info.max:
            return values.astype(dtype)
    return values


def _spike_times(run, table, starts):
    if int(table["spike_count"].sum()) == 0 and run.response_unit != "spikes":
        return None
    times = run.file["spikes/times"][()]
    chunks = [starts[k] + times[s:s + c] for k, (s, c) in enumerate(zip(table["spike_start"], table["spike_count"])) if c]
    return np.sort(np.concatenate(chunks)) if chunks else np.zeros(0)


def _stimuli(nwb, run, table, starts, H5DataIO, TimeSeries) -> str:
    index = table["stimulus"].to_numpy()
    distinct, inverse = np.unique(index, return_inverse=True)
    rendered = run.rendered(distinct)  # as logged, or rendered again from the latents
    if rendered is None:
        return "none (the log keeps no stimuli and its space cannot render them)"
    if run.modality == "audio":
        return _sounds(nwb, run, rendered, inverse, starts, H5DataIO, TimeSeries)
    from pynwb.image import GrayscaleImage, Images, ImageSeries, RGBImage

    images = rendered.astype(np.float32)
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


def _sounds(nwb, run, waves, inverse, starts, H5DataIO, TimeSeries) -> str:
    rate = run.sample_rate or 16000
    length = int(run.file.attrs["stimulus_shape"][0])
    origin = float(starts.min())
    total = int(round((starts.max() - origin) * rate)) + length
    if total > MAX_AUDIO_SAMPLES:
        return f"none (a session waveform of {total} samples would be too large)"
    waves = waves.astype(np.float32)
    track = np.zeros(total, dtype=np.float32)
    for k, start in enumerate(starts):
        at = int(round((start - origin) * rate))
        track[at:at + length] = waves[inverse[k]]
    nwb.add_stimulus(TimeSeries(
        name="presented_sounds", data=H5DataIO(track, compression="gzip"), rate=float(rate), starting_time=origin,
        unit="stimulus value", description="the sounds as presented on the session clock, silence between trials"))
    return f"{len(inverse)} presented sounds"
