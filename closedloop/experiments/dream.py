"""dream: amplify what a unit sees in a picture, or hears in a recording, staying near it.

DeepDream (Mordvintsev et al. 2015) starts from a photograph and climbs the activation of a unit
or of a whole layer, so that what the network half-sees in it is drawn in. Here the source is
a scikit-image picture, an image file or a WAV recording; the unit is any neuron, a whole layer
with `objective: layer_energy` (neurons/dnn.py). The stimuli stay near the source (the
NearSource space, spaces/near.py): a change of at most `distance` (RMS), made of frequencies up
to a highest one with a 1/f^alpha prior. With `octaves` > 1 the band widens stage by stage, as
DeepDream's octaves go from coarse to fine.

Any optimizer climbs: by default gradient ascent with its priors (jitter, blur, total
variation, a Fourier penalty, decay) where the neuron exposes its gradient, else CMA-ES from the
unit's responses alone. Each stage's first stimulus is the best one so far (gradient ascent
climbs from it, CMA-ES takes it as an injected candidate); the very first
stimulus shown is the source itself (latent 0). Every presentation is logged; the analysis writes
the steps as images or sounds and asks the independent judges about the source and the dream.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field, model_validator
from tqdm.auto import tqdm

from closedloop.errors import ProtocolError
from closedloop.experiments.base import Experiment, ExperimentSettings, check_finite
from closedloop.registry import register

COLUMNS = ("octave", "band", "distance")
DEFAULT_F_MIN = 60.0  # Hz: the lowest frequency a recording's dream may change, unless f_min says


class DreamSettings(ExperimentSettings):
    source: str = Field(description="the picture (a scikit-image picture's name, or an image file) or the recording "
                                    "(a WAV file) to dream on; a relative path is read beside the protocol")
    offset: float = Field(0.0, ge=0, le=3600, description="recording: where the unit's window starts in it, s")
    distance: float = Field(gt=0, le=1e6, description="largest RMS difference from the source, in the unit's input "
                                                      "values (a picture in [0, 1], a sound of full scale 1)")
    max_frequency: float | None = Field(None, gt=0, le=0.5, description="picture: highest frequency that changes, "
                                                                        "cycles/pixel; default 0.5 (every grating up "
                                                                        "to half a cycle per pixel)")
    f_max: float | None = Field(None, gt=0, le=192_000, description="recording: highest frequency that changes, Hz; "
                                                                    "default half the sample rate (Nyquist)")
    f_min: float | None = Field(None, gt=0, le=192_000, description="recording: lowest frequency that changes, Hz; "
                                                                    "default 60 (a unit may hear a slow drift below "
                                                                    "hearing)")
    alpha: float = Field(1.0, ge=0, le=4, description="the change's prior: amplitudes 1/f^alpha")
    octaves: int = Field(1, ge=1, le=12, description="coarse-to-fine stages; in the last every frequency up to the "
                                                     "highest changes, in each before it 1/octave_scale as many")
    octave_scale: float = Field(2.0, gt=1, le=16, description="ratio of the highest frequencies of two stages")
    steps: int = Field(20, ge=2, le=100_000, description="generations (logged steps) per stage; the first shows "
                                                        "where the stage starts, so at least 2")
    repeats: int = Field(1, ge=1, le=10_000, description="presentations of each stimulus per step")

    @model_validator(mode="after")
    def _one_band(self):
        if self.max_frequency is not None and (self.f_max, self.f_min) != (None, None):
            raise ValueError("give max_frequency (a picture, cycles/pixel) or f_min/f_max (a recording, Hz), not both")
        if self.f_min is not None and self.f_max is not None and self.f_min >= self.f_max:
            raise ValueError(f"f_min ({self.f_min} Hz) must be below f_max ({self.f_max} Hz)")
        return self


@register("experiment", "dream")
class Dream(Experiment):
    Config = DreamSettings
    roles = ("neuron", "optimizer")

    @classmethod
    def default_section(cls, role: str, sections: dict) -> dict | None:
        """Without an `optimizer:` section: gradient ascent where the neuron exposes its gradient,
        else CMA-ES."""
        if role != "optimizer" or "neuron" not in sections:
            return None
        return {"kind": "gradient_ascent"} if sections["neuron"].cls.has_gradient else {"kind": "cmaes"}

    def own_space(self):
        from closedloop.spaces.near import NearSource

        cfg, neuron, where = self.settings, self.neuron, f"{self.protocol.source}: source"
        shape = tuple(neuron.stimulus_shape)
        if neuron.modality == "audio":
            from closedloop.experiments.seeding import recording

            if cfg.max_frequency is not None:
                raise ProtocolError(f"{self.protocol.source}: max_frequency: for pictures; a recording's is f_max (Hz)")
            rate = neuron.sample_rate
            if cfg.f_max is not None and cfg.f_max > rate / 2:
                raise ProtocolError(f"{self.protocol.source}: f_max: {cfg.f_max} Hz is above half the unit's sample "
                                    f"rate ({rate} Hz)")
            source = recording(cfg.source, rate, shape[-1], cfg.offset, self.protocol.source, where)
            top, bottom = (cfg.f_max or rate / 2) / rate, (cfg.f_min or DEFAULT_F_MIN) / rate
        else:
            from closedloop.experiments.seeding import picture

            if not (len(shape) == 2 and shape[0] == shape[1] or len(shape) == 3 and shape[0] in (1, 3)
                    and shape[1] == shape[2]):
                raise ProtocolError(f"{self.protocol.source}: neuron: a picture's dream needs a unit that takes square "
                                    f"images, (H, H), (1, H, H) or (3, H, H); this one takes {shape}")
            for name in ("f_min", "f_max"):
                if getattr(cfg, name) is not None:
                    raise ProtocolError(f"{self.protocol.source}: {name}: for recordings; a picture's band is "
                                        f"max_frequency")
            if len(shape) == 2 and neuron.value_range is not None:  # a gray picture in the unit's range, not
                source = picture(cfg.source, (1, *shape), self.protocol.source, where)[0]  # a zero-mean contrast
            else:
                source = picture(cfg.source, shape, self.protocol.source, where)
            top, bottom = cfg.max_frequency or 0.5, 0.0
        if neuron.value_range is not None:
            source = np.clip(source, *neuron.value_range)
            span = neuron.value_range[1] - neuron.value_range[0]
            if cfg.distance > span:
                raise ProtocolError(f"{self.protocol.source}: distance: {cfg.distance:g} is more than the unit's whole "
                                    f"input range ({neuron.value_range[0]:g} to {neuron.value_range[1]:g}); at most "
                                    f"{span:g}")
        try:
            space = NearSource(source, distance=cfg.distance, max_frequency=top, alpha=cfg.alpha,
                               modality=neuron.modality, value_range=neuron.value_range,
                               sample_rate=neuron.sample_rate, min_frequency=bottom)
        except ValueError as exc:
            raise ProtocolError(f"{self.protocol.source}: {exc}") from None
        self.bands = [top / cfg.octave_scale ** (cfg.octaves - 1 - k) for k in range(cfg.octaves)]
        if not np.any((space.frequencies > 0) & (space.frequencies <= self.bands[0] + 1e-12)):
            raise ProtocolError(f"{self.protocol.source}: octaves: in the first of {cfg.octaves} octaves nothing "
                                f"up to {self.band_value(self.bands[0]):.3g} {self.band_unit()} may change; give "
                                f"fewer octaves or a smaller octave_scale")
        return space

    def __init__(self, protocol):
        super().__init__(protocol)
        if self.settings.record_rendered is False:
            raise ProtocolError(f"{protocol.source}: record_rendered: a dream logs every step as presented (its "
                                f"space is built around the source and cannot render again from the log)")
        self.settings = self.settings.model_copy(update={"record_rendered": True})
        if not (self.optimizer.learns_from_any_stimulus or self.optimizer.proposes_given):
            raise ProtocolError(f"{protocol.source}: optimizer: {self.optimizer.kind} searches from its own starting "
                                f"point and cannot start from the source; use gradient_ascent (with the unit's "
                                f"gradient) or cmaes")

    def band_value(self, band: float) -> float:
        """A band in the protocol's units: cycles/pixel, or Hz for a recording."""
        return band * self.neuron.sample_rate if self.neuron.modality == "audio" else band

    def band_unit(self) -> str:
        return "Hz" if self.neuron.modality == "audio" else "cycles/pixel"

    def run(self, path, progress: bool = True) -> dict:
        cfg, space, neuron = self.settings, self.space, self.neuron
        writer = self.open_log(Path(path), columns=COLUMNS)
        total = cfg.octaves * cfg.steps
        bar = tqdm(total=total, desc=f"dream {neuron.kind}", unit="step", disable=not progress, leave=False)
        presentations, generation = 0, 0
        best, best_index, best_z = -np.inf, -1, np.zeros(space.dim)
        with self.logging_to(writer, bar):
            for octave, band in enumerate(self.bands):
                space.set_band(band)
                if octave:  # a fresh optimizer for the wider band, from the best stimulus so far
                    self.optimizer = self.protocol.build("optimizer", space=space, neuron=neuron)
                optimizer = self.optimizer
                optimizer.plan(cfg.steps * optimizer.popsize)
                for step in range(cfg.steps):
                    # each stage's first stimulus is the best one so far (the source, at first)
                    z = optimizer.ask_from(best_z[None]) if step == 0 else np.asarray(optimizer.ask(), np.float64)
                    check_finite(z, f"optimizer {optimizer.kind}: latent vectors of step {generation}")
                    stimuli = space.render(z)
                    trials = neuron.present(stimuli, cfg.repeats)
                    check_finite(trials.responses, f"neuron {neuron.kind}: responses of step {generation}")
                    scores = trials.responses.mean(axis=1)
                    optimizer.tell(z, scores)
                    index = writer.add_stimuli(z, generation, stimuli)
                    writer.add_trials(index, generation, trials)
                    presentations += trials.responses.size
                    top = int(np.argmax(scores))
                    if scores[top] > best:
                        # as rendered: latents outside the band had no effect and must not have one later
                        best, best_index, best_z = float(scores[top]), int(index[top]), z[top] * space.active
                    writer.add_generation(
                        {"generation": generation, "presentations": presentations, "best": best,
                         "mean": scores.mean(), "max": scores[top], "best_stimulus": best_index,
                         "octave": octave, "band": self.band_value(band),
                         "distance": float(space.distances(stimuli[top:top + 1])[0]), **optimizer.status()},
                        optimizer.recommend())
                    writer.flush()
                    generation += 1
                    bar.update()
                    bar.set_postfix(best=f"{best:.3g}", octave=octave)
                    if self.stop_requested:
                        break
                if self.stop_requested:
                    break
        return self.summary(self.log_status, writer.path, presentations=presentations)
