"""evolve: the closed loop. ask -> render -> present with repeats -> aggregate -> tell -> record."""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator
from tqdm import tqdm

from closedloop.experiments.base import Experiment, ExperimentSettings, check_finite
from closedloop.registry import register


class EvolveSettings(ExperimentSettings):
    generations: int | None = Field(30, ge=1, description="stop after this many generations")
    budget: int | None = Field(None, ge=1, description="stop before exceeding this many presentations")
    repeats: int = Field(1, ge=1, description="presentations of each stimulus per generation")
    aggregate: str = Field("mean", pattern="^(mean|median)$", description="how repeats become one score")

    @model_validator(mode="after")
    def _some_stop_rule(self):
        if self.generations is None and self.budget is None:
            raise ValueError("give generations or budget (or both) as the stop rule")
        return self


@register("experiment", "evolve")
class Evolve(Experiment):
    Config = EvolveSettings

    def score(self, responses: np.ndarray) -> np.ndarray:
        return np.median(responses, axis=1) if self.settings.aggregate == "median" else responses.mean(axis=1)

    def run(self, path, progress: bool = True) -> dict:
        cfg, space, neuron, optimizer = self.settings, self.space, self.neuron, self.optimizer
        per_generation = optimizer.popsize * cfg.repeats
        total = cfg.generations if cfg.generations is not None else 10**9
        if cfg.budget is not None:
            total = min(total, cfg.budget // per_generation)
        writer = self.open_log(path)
        best, best_index, presentations, status = -np.inf, -1, 0, "failed"
        bar = tqdm(total=total, desc=f"evolve {neuron.kind}", unit="gen", disable=not progress, leave=False)
        try:
            with self.stop_on_interrupt():
                for generation in range(total):
                    z = optimizer.ask()
                    check_finite(z, f"optimizer {optimizer.kind}: latent vectors of generation {generation}")
                    stimuli = space.render(z)
                    check_finite(stimuli, f"space {space.kind}: stimuli of generation {generation}")
                    trials = neuron.present(stimuli, cfg.repeats)
                    check_finite(trials.responses, f"neuron {neuron.kind}: responses of generation {generation}")
                    scores = self.score(trials.responses)
                    optimizer.tell(z, scores)
                    index = writer.add_stimuli(z, generation, stimuli)
                    writer.add_trials(index, generation, trials)
                    presentations += trials.responses.size
                    top = int(np.argmax(scores))
                    if scores[top] > best:
                        best, best_index = float(scores[top]), int(index[top])
                    writer.add_generation(
                        {"generation": generation, "presentations": presentations, "best": best,
                         "mean": scores.mean(), "max": scores[top], "best_stimulus": best_index,
                         **optimizer.status()},
                        optimizer.recommend())
                    writer.flush()
                    bar.update()
                    bar.set_postfix(best=f"{best:.3g}", mean=f"{scores.mean():.3g}")
                    if self.stop_requested:
                        break
            status = "interrupted" if self.stop_requested else "complete"
        finally:
            bar.close()
            writer.close(status)
        return {"status": status, "log": str(path), "presentations": presentations,
                "best_response": best, "best_stimulus": best_index}
