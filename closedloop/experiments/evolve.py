"""evolve: the closed loop. ask -> render -> present with repeats -> aggregate -> tell -> record.

Extras an experimenter uses: seed stimuli injected into the first generation, reference
stimuli re-shown every generation to track drift, a final re-test of the top candidates with
extra repeats (so the reported best is a mean, not a lucky maximum), and resume: a crashed or
interrupted run continues from its log to the same trials an uninterrupted run gives.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydantic import Field, model_validator
from tqdm.auto import tqdm

from closedloop.component import ProtocolPath, Settings
from closedloop.errors import ClosedLoopError, ProtocolError, write_error
from closedloop.experiments.base import Experiment, ExperimentSettings, check_finite
from closedloop.experiments.seeding import seed_latents
from closedloop.recording.writer import RunWriter
from closedloop.registry import register


class SeedStimuli(Settings):
    images: list[str] = Field(default_factory=list, description="scikit-image pictures, e.g. camera, astronaut")
    run: ProtocolPath | None = Field(None, description="an earlier run log (beside the protocol): its best stimuli "
                                     "seed this one")
    count: int = Field(4, ge=1, le=10_000, description="how many stimuli to take from `run`")


class Reference(Settings):
    count: int = Field(2, ge=1, le=1000, description="fixed stimuli re-shown every generation")
    repeats: int | None = Field(None, ge=1, le=10_000, description="default: the search's repeats, so that search "
                                "and reference stimuli are one presentation batch")


class Retest(Settings):
    top: int = Field(5, ge=1, le=10_000, description="re-test this many of the best stimuli at the end")
    repeats: int = Field(10, ge=1, le=10_000, description="presentations of each re-tested stimulus")


class EvolveSettings(ExperimentSettings):
    generations: int | None = Field(30, ge=1, le=1_000_000, description="stop after this many generations")
    budget: int | None = Field(None, ge=1, le=10**9, description="stop before the search exceeds this many presentations "
                               "(reference and re-test presentations come on top)")
    repeats: int = Field(1, ge=1, le=10_000, description="presentations of each stimulus per generation")
    aggregate: str = Field("mean", pattern="^(mean|median)$", description="how repeats become one score")
    seed_stimuli: SeedStimuli | None = Field(None, description="stimuli injected into the first generation")
    reference: Reference | None = Field(None, description="fixed stimuli re-shown every generation to track drift")
    retest: Retest | None = Field(None, description="a final re-test of the best stimuli, so the best is a mean")

    @model_validator(mode="after")
    def _some_stop_rule(self):
        if self.generations is None and self.budget is None:
            raise ValueError("give generations or budget (or both) as the stop rule")
        return self


@register("experiment", "evolve")
class Evolve(Experiment):
    Config = EvolveSettings
    streams = {"reference": 99}
    resumable = True

    @classmethod
    def default_section(cls, role: str, sections: dict) -> dict | None:
        """Without an `optimizer:` section: the model-based search that re-uses every trial
        (docs/benchmarks.md, "Optimizer sample efficiency"), or CMA-ES where the space cannot
        encode stimuli or the neuron is a unit of a deep network."""
        if role != "optimizer" or "space" not in sections:
            return None
        from closedloop.optimizers.linear_model import default_section

        return default_section(sections["space"].cls, sections["neuron"].cls if "neuron" in sections else None)

    def __init__(self, protocol):
        super().__init__(protocol)
        self.optimizer.plan(self.total_generations() * self.optimizer.popsize)
        if self.total_generations() == 0:
            per_generation = self.optimizer.popsize * self.settings.repeats
            raise ProtocolError(f"{protocol.source}: budget: {self.settings.budget} presentations are fewer than one "
                                f"generation ({self.optimizer.popsize} stimuli x {self.settings.repeats} repeats = "
                                f"{per_generation})")
        seeds = self.settings.seed_stimuli
        self.injected = seed_latents(seeds, self.space, protocol.source) if seeds else None
        if self.injected is not None:
            if not self.optimizer.learns_from_any_stimulus:
                raise ProtocolError(f"{protocol.source}: seed_stimuli: optimizer {self.optimizer.kind!r} searches from "
                                    f"its own starting point and cannot start from given stimuli")
            self.injected = self.injected[: self.optimizer.popsize]
        reference = self.settings.reference
        self.references = self.space.sample(self.rng("reference"), reference.count) \
            if reference else None

    def score(self, responses: np.ndarray) -> np.ndarray:
        return np.median(responses, axis=1) if self.settings.aggregate == "median" else responses.mean(axis=1)

    def total_generations(self) -> int:
        cfg = self.settings
        total = cfg.generations if cfg.generations is not None else 10**9
        if cfg.budget is not None:
            total = min(total, cfg.budget // (self.optimizer.popsize * cfg.repeats))
        return total

    def _ask(self, generation: int) -> np.ndarray:
        if generation == 0 and self.injected is not None:
            return self.optimizer.ask_from(self.injected)
        return np.array(self.optimizer.ask(), dtype=np.float64)

    def _state(self) -> dict[str, np.ndarray]:
        return {f"neuron.{k}": np.ravel(v) for k, v in self.neuron.get_state().items()}

    def run(self, path, progress: bool = True, resume: bool = False) -> dict:
        path = Path(path)
        shapes = {name: value.size for name, value in self._state().items()}
        if resume:
            writer, start, best, best_index, presentations = self._resume(path, shapes)
        else:
            writer, start = self.open_log(path, shapes), 0
            best, best_index, presentations = -np.inf, -1, 0
            if self.references is not None:
                self.reference_index = writer.add_stimuli(self.references, -1, self.space.render(self.references))
        return self._loop(writer, start, best, best_index, presentations, progress)

    def _loop(self, writer: RunWriter, start, best, best_index, presentations, progress) -> dict:
        cfg, space, neuron, optimizer = self.settings, self.space, self.neuron, self.optimizer
        total = self.total_generations()
        bar = tqdm(total=total, initial=start, desc=f"evolve {neuron.kind}", unit="gen", disable=not progress,
                   leave=False)
        with self.logging_to(writer, bar):
            for generation in range(start, total):
                z = self._ask(generation)
                check_finite(z, f"optimizer {optimizer.kind}: latent vectors of generation {generation}")
                stimuli = space.render(z)
                check_finite(stimuli, f"space {space.kind}: stimuli of generation {generation}")
                trials, reference_trials = self._present(stimuli)
                check_finite(trials.responses, f"neuron {neuron.kind}: responses of generation {generation}")
                scores = self.score(trials.responses)
                optimizer.tell(z, scores)
                index = writer.add_stimuli(z, generation, stimuli)
                writer.add_trials(index, generation, trials)
                if reference_trials is not None:
                    writer.add_trials(self.reference_index, generation, reference_trials, "reference")
                presentations += trials.responses.size
                top = int(np.argmax(scores))
                if scores[top] > best:
                    best, best_index = float(scores[top]), int(index[top])
                writer.add_generation(
                    {"generation": generation, "presentations": presentations, "best": best,
                     "mean": scores.mean(), "max": scores[top], "best_stimulus": best_index,
                     **optimizer.status()},
                    optimizer.recommend(), self._state())
                writer.flush()
                bar.update()
                bar.set_postfix(best=f"{best:.3g}", mean=f"{scores.mean():.3g}")
                if self.stop_requested:
                    break
            if cfg.retest and not self.stop_requested:
                self._retest(writer, total)
        return self.summary(self.log_status, writer.path, presentations=presentations)

    def _present(self, stimuli):
        """Search and reference stimuli in one presentation batch (one simulation)."""
        repeats = self.settings.repeats
        if self.references is None:
            return self.neuron.present(stimuli, repeats), None
        ref = self.settings.reference
        if ref.repeats not in (None, repeats):
            return self.neuron.present(stimuli, repeats), self.neuron.present(self.space.render(self.references), ref.repeats)
        both = self.neuron.present(np.concatenate([stimuli, self.space.render(self.references)]), repeats)
        n = len(stimuli)
        return _rows(both, slice(0, n)), _rows(both, slice(n, None))

    def _retest(self, writer: RunWriter, generation: int) -> None:
        """Show the stimuli with the best mean search responses again, `retest.repeats` times each."""
        cfg = self.settings.retest
        means = writer.stimulus_means("search")["mean"]
        top = np.sort(means.sort_values(ascending=False, kind="stable").index[: cfg.top].to_numpy())
        result = self.neuron.present(self.space.render(writer.latents(top)), cfg.repeats)
        check_finite(result.responses, f"neuron {self.neuron.kind}: responses of the re-test")
        writer.add_trials(top, generation, result, "retest")
        writer.flush()

    def _resume(self, path: Path, shapes):
        """Rebuild optimizer and neuron from the log, then keep appending to it.

        The optimizer is replayed: asked again with its recorded seed, told the recorded
        responses. The neuron takes its state after the last complete generation. Whatever was
        in flight when the run stopped is dropped: the log is copied without it, then swapped in.
        """
        from closedloop.recording import open_run

        with open_run(path) as run:
            done = len(run.generations)
            trials = run.trials
            logged_z = run.z
            stimulus_generation = run.stimulus_generation
            saved = run.saved_state if done else {}
            created = run.created
            last = run.generations.iloc[-1] if done else None
            search = trials[trials["phase"] == "search"]
            for generation in range(done):
                z = self._ask(generation)
                rows = np.nonzero(stimulus_generation == generation)[0]
                if len(rows) != len(z) or not np.allclose(z.astype(np.float32), logged_z[rows], rtol=1e-5, atol=1e-6):
                    raise ClosedLoopError(f"{path}: cannot resume: replaying the optimizer diverged from the log at "
                                          f"generation {generation} (was it written by another version?)")
                these = search[search["generation"] == generation]
                responses = np.empty((len(z), self.settings.repeats))
                responses[these["stimulus"].to_numpy() - rows[0], these["repeat"].to_numpy()] = these["response"]
                self.optimizer.tell(z, self.score(responses))
            if done:
                self.neuron.set_state({name: saved[f"neuron.{name}"][-1].reshape(np.shape(value))
                                       for name, value in self.neuron.get_state().items()})
            temporary = path.with_name(path.name + ".resume")
            writer = self.open_log(temporary, shapes, created=created)
            try:
                writer.copy_complete_generations(run, done)
                writer.close("running")
            except BaseException:
                writer.close("failed")
                temporary.unlink(missing_ok=True)
                raise
        try:
            os.replace(temporary, path)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise write_error(path, exc, "cannot replace the run log") from None
        writer = RunWriter.reopen(path)
        self.reference_index = np.nonzero(stimulus_generation == -1)[0]
        if self.references is not None and len(self.reference_index) == 0:  # stopped before logging them
            self.reference_index = writer.add_stimuli(self.references, -1, self.space.render(self.references))
        if last is None:
            return writer, 0, -np.inf, -1, 0
        return writer, done, float(last["best"]), int(last["best_stimulus"]), int(last["presentations"])


def _rows(trials, rows: slice):
    from closedloop.neurons.base import Trials

    spikes = None
    if trials.spike_times is not None:
        repeats = trials.responses.shape[1]
        start = rows.start * repeats
        stop = None if rows.stop is None else rows.stop * repeats
        spikes = trials.spike_times[start:stop]
    return Trials(responses=trials.responses[rows], t_start=trials.t_start[rows], clean=trials.clean[rows],
                  state={k: v[rows] for k, v in trials.state.items()}, spike_times=spikes)
