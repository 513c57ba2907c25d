"""rearing: raise the digits network on other experience, then try to fool its digit unit.

    kind: rearing
    digit: 3
    conditions:                       # name -> rearing (closedloop/neurons/reared_digits.py)
      standard: {}
      white-static: {static: white}   # static as an 11th "none of these" class
      brown-backgrounds: {backgrounds: brown}
    static: {kinds: [white, pink, brown], count: 10000, threshold: 0.5}
    evolve: {budget: 3000, threshold: 0.99, seeds: 3}

For each condition the network is trained (once; cached), then its digit unit is shown random
static (one `fooling` run per static kind: the same draws for every condition) and searched
black-box from its output alone (one `evolve` run per seed, with the project's default optimizer
unless `evolve.optimizer` names one). Each is an ordinary run log under
<output>/<condition>/, holding every trial and its own protocol: `closedloop analyze` reads it,
`closedloop resume` continues an evolve log. Running the protocol again skips the logs already
complete with the same protocol, continues interrupted searches, and redoes the rest; then
closedloop/analysis/rearing.py compares the conditions (summary.csv, searches.csv, rearing.png).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator
from tqdm.auto import tqdm

from closedloop.component import Settings
from closedloop.errors import ClosedLoopError, shorten
from closedloop.experiments.base import Experiment
from closedloop.neurons.reared_digits import Rearing, Static
from closedloop.registry import register
from closedloop.stimuli import STATIC_COLOURS



PROTOCOL_FILE = "protocol.yaml"  # the rearing protocol, beside its logs

class StaticTest(Settings):
    kinds: list[Static] = Field(["white", "pink", "brown"], min_length=1, description="static shown: white, pink, brown")
    count: int = Field(10000, ge=1, le=10_000_000, description="random images of each kind")
    contrast: float = Field(0.25, gt=0, le=10, description="RMS of the static (of the 0..1 range), around mid-gray")
    threshold: float = Field(0.5, gt=0, lt=1, description="fooled: the network's probability of the digit above this")
    confidence: float = Field(0.95, gt=0, lt=1, description="level of the Clopper-Pearson intervals")


class SearchTest(Settings):
    budget: int = Field(3000, ge=1, le=100_000_000, description="presentations of each search")
    threshold: float = Field(0.99, gt=0, lt=1, description="fooled: the probability of the digit above this")
    seeds: int | list[int] = Field(3, description="a count (seeds 0..N-1) or a list")
    space: dict[str, Any] = Field({"kind": "color_pixels", "size": 8, "channels": 1, "contrast": 0.3},
                                  description="the stimulus space searched")
    optimizer: dict[str, Any] | None = Field(None, description="default: the evolve kind's default optimizer")

    @field_validator("seeds")
    @classmethod
    def _some_seeds(cls, seeds):
        if isinstance(seeds, int) and seeds < 1 or isinstance(seeds, list) and (not seeds or min(seeds) < 0):
            raise ValueError("expected a count >= 1 or a non-empty list of seeds >= 0")
        return seeds

    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


class RearingSettings(Settings):
    seed: int = Field(0, ge=0, le=2**32 - 1, description="draws the static shown")
    output: str | None = Field(None, description="directory of the run logs; default data/<protocol name>")
    digit: int = Field(3, ge=0, le=9, description="the class unit tested")
    readout: Literal["probability", "log_probability"] = Field(
        "log_probability", description="what the unit answers (and the search sees): p(digit) or log p(digit)")
    conditions: dict[str, Rearing] = Field(min_length=1, description="name -> rearing")
    static: StaticTest = StaticTest()
    evolve: SearchTest = SearchTest()

    @field_validator("conditions")
    @classmethod
    def _names_are_folder_names(cls, conditions):
        for name in conditions:
            if not re.fullmatch(r"[A-Za-z0-9][\w-]{0,63}", name):
                raise ValueError(f"condition name {shorten(repr(name), 80)}: use at most 64 letters, digits, '-' or '_' "
                                 f"(it names a folder beside the summary files)")
        return conditions


@register("experiment", "rearing")
class RearingExperiment(Experiment):
    Config = RearingSettings
    roles = ()
    writes_directory = True

    def __init__(self, protocol):
        super().__init__(protocol)
        from closedloop import protocol as protocol_module

        self.runs = []  # one per log: its condition, role ("static" | "evolve"), key, name and protocol
        for condition in self.settings.conditions:
            for role, key, name, data in self._runs_of(condition):
                source = f"{protocol.source} (condition {condition}, {name})"
                text = protocol_module.from_dict(data, source).text
                self.runs.append({"condition": condition, "role": role, "key": key, "name": name,
                                  "source": source, "text": text})

    def response_threshold(self, probability: float) -> float:
        return math.log(probability) if self.settings.readout == "log_probability" else probability

    def neuron_section(self, condition: str) -> dict:
        cfg = self.settings
        rearing = cfg.conditions[condition].model_dump(mode="json", exclude_defaults=True)
        return {"kind": "reared_digits", "rearing": rearing, "digit": cfg.digit, "readout": cfg.readout}

    def _runs_of(self, condition: str):
        cfg, neuron = self.settings, self.neuron_section(condition)
        for kind in cfg.static.kinds:
            noise, alpha = STATIC_COLOURS[kind]
            yield "static", kind, f"static-{kind}", {
                "kind": "fooling", "seed": cfg.seed, "neuron": neuron, "noise": [noise],
                **({"alpha": alpha} if alpha is not None else {}), "count": cfg.static.count,
                "contrast": cfg.static.contrast, "threshold": self.response_threshold(cfg.static.threshold),
                "confidence": cfg.static.confidence}
        search = cfg.evolve
        for seed in search.seed_list():
            yield "evolve", seed, f"evolve-seed{seed}", {
                "kind": "evolve", "seed": seed, "neuron": neuron, "space": dict(search.space),
                **({"optimizer": dict(search.optimizer)} if search.optimizer else {}),
                "budget": search.budget, "generations": None}

    def default_output(self) -> Path:
        if self.settings.output:
            return Path(self.settings.output)
        return Path("data") / Path(self.protocol.source).stem

    def run(self, path=None, progress: bool = True) -> dict:
        from closedloop.analysis import rearing as analysis

        out_dir = Path(path) if path is not None else self.default_output()
        self._locate(out_dir)
        # every run still to do is built, and so checked, before anything is written (this trains the
        # networks of the conditions that are not cached yet)
        for spec in tqdm(self.runs, desc="rearing: building the runs", unit="run", disable=not progress, leave=False):
            spec["state"] = _logged_state(spec["log"], spec["text"])
            spec["experiment"] = self._build(spec) if spec["state"] != "complete" else None
        out_dir.mkdir(parents=True, exist_ok=True)
        written = out_dir / PROTOCOL_FILE  # so that `closedloop analyze FOLDER` can compare again
        partial = written.with_name(f".{PROTOCOL_FILE}.part")
        partial.write_text(self.protocol.text, encoding="utf-8")
        partial.replace(written)
        bar = tqdm(total=len(self.runs), desc=f"rearing {out_dir.name}", unit="run", disable=not progress)
        status, ran = "complete", 0
        try:
            for spec in self.runs:
                if spec["state"] != "complete":
                    bar.set_postfix_str(f"{spec['condition']} {spec['name']}")
                    spec["log"].parent.mkdir(parents=True, exist_ok=True)
                    experiment, spec["experiment"] = spec["experiment"], None  # its network is freed after its run
                    if spec["state"] == "resumable":
                        result = experiment.run(spec["log"], progress=progress, resume=True)
                    else:
                        result = experiment.run(spec["log"], progress=progress, overwrite=True)  # redone
                    ran += 1
                    if result.get("status") != "complete":
                        status = result.get("status", "failed")
                        break
                bar.update()
        finally:
            bar.close()
        summary = {"status": status, "output": str(out_dir), "runs": len(self.runs), "ran": ran}
        if status == "complete":
            summary.update(analysis.compare(self._layout(), out_dir, self.settings))
        return summary

    def summarise(self, out_dir: Path) -> dict:
        """The comparison of the conditions, again, from the logs in `out_dir` alone."""
        from closedloop.analysis import rearing as analysis

        self._locate(Path(out_dir))
        missing = [str(spec["log"]) for spec in self.runs if not spec["log"].is_file()]
        if missing:
            raise ClosedLoopError(f"{out_dir}: {len(missing)} of the protocol's logs are missing (first: {missing[0]})")
        return {"runs": len(self.runs), "ran": 0, "output": str(out_dir), "status": "complete",
                **analysis.compare(self._layout(), Path(out_dir), self.settings)}

    def _locate(self, out_dir: Path) -> None:
        for spec in self.runs:
            spec["log"] = out_dir / spec["condition"] / f"{spec['name']}.h5"

    @staticmethod
    def _build(spec: dict):
        from closedloop import protocol as protocol_module

        protocol = protocol_module.parse(spec["text"], spec["source"])
        return protocol.experiment_cls(protocol)

    def _layout(self) -> dict[str, dict]:
        """condition -> {"static": {kind: log}, "evolve": {seed: log}}, in the protocol's order."""
        layout = {name: {"static": {}, "evolve": {}} for name in self.settings.conditions}
        for spec in self.runs:
            layout[spec["condition"]][spec["role"]][spec["key"]] = spec["log"]
        return layout

    def report(self, out, summary: dict, echo=print) -> None:
        echo(f"rearing: {summary['runs']} runs in {summary['output']} ({summary['ran']} run now, "
             f"the rest complete before)")
        for line in summary.get("lines", []):
            echo(line)
        if summary["status"] == "interrupted":
            echo("running the protocol again keeps the complete logs and resumes the interrupted search")


def _logged_state(log: Path, text: str) -> str | None:
    """"complete" or "resumable" when `log` holds a run of exactly this protocol, else None (redo it)."""
    if not log.is_file():
        return None
    from closedloop.recording import open_run

    try:
        with open_run(log) as run:
            if run.protocol != text:
                return None
            if run.status == "complete":
                return "complete"
            return "resumable" if run.kind == "evolve" and len(run.generations) else None
    except (ClosedLoopError, OSError, KeyError, ValueError):
        return None
