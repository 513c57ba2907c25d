"""Dreams of the shipped protocols over seeds, and of other units, layers and optimizers.

For each run: the unit's response to the source and to the dream (the last step), the largest
distance from the source against its bound, what the independent judges say of both, and, where
the unit is a logit, the network's own probability of its class for the same two stimuli (the
face unit's p(face), the word unit's p("yes")). Runs go to OUT/NAME.h5 with their analyses;
--figure writes the last step of every picture run side by side.

    PYTHONPATH=$PWD python benchmarks/dream_variants.py --seeds 5 --variants --out data/dreams \
        --figure docs/figures/dream-picture-variants.png
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np

from closedloop import protocol as protocol_module
from closedloop.analysis import analyze
from closedloop.analysis.dream import as_rgb
from closedloop.analysis.plots import save, subplots
from closedloop.neurons.dnn import DNNSettings, DNNUnit
from closedloop.recording import open_run

PROTOCOLS = Path(__file__).resolve().parents[1] / "protocols"
PICTURE, SPEECH = PROTOCOLS / "dream-picture.yaml", PROTOCOLS / "dream-speech.yaml"
# the probability of the class whose logit a protocol climbs
PROBABILITY = {"face": "face_probability", "word": "yes"}
VARIANTS = [
    (PICTURE, "face probability", {"neuron.unit": "face_probability"}),
    (PICTURE, "one octave", {"octaves": 1, "steps": 60}),
    (PICTURE, "prior 1/f^2", {"alpha": 2}),
    (PICTURE, "layer conv3 energy", {"neuron": {"kind": "dnn", "model": "face", "layer": "conv3",
                                                "objective": "layer_energy"}}),
    (PICTURE, "black-box CMA-ES", {"optimizer": {"kind": "cmaes"}, "octaves": 1, "max_frequency": 0.0625,
                                   "steps": 60}),
    (PICTURE, "astronaut", {"source": "astronaut"}),
    (PICTURE, "coffee", {"source": "coffee"}),
    (SPEECH, "note C4", {"neuron": {"kind": "dnn", "model": "note", "unit": "C4"}}),
    (SPEECH, "pitch A4", {"neuron": {"kind": "dnn", "model": "pitch", "unit": "A4"}}),
    (SPEECH, "speech probability", {"neuron": {"kind": "dnn", "model": "speech", "unit": "speech_probability"}}),
    (SPEECH, "word layer conv3 energy", {"neuron": {"kind": "dnn", "model": "word", "layer": "conv3",
                                                    "objective": "layer_energy"}}),
    (SPEECH, "word, distance 0.12 (0 dB)", {"distance": 0.12}),
]


def probability(config: dict, stimuli: np.ndarray) -> str:
    unit = PROBABILITY.get(config.get("model"))
    if unit is None or config.get("unit") == unit:
        return ""
    neuron = DNNUnit(DNNSettings.model_validate({"model": config["model"], "unit": unit}), 0)
    before, after = neuron.activation(stimuli)
    return f"; p({unit.removesuffix('_probability')}) {before:.3g} -> {after:.3g}"


def dream(path: Path, name: str, overrides: dict, out: Path) -> tuple[str, np.ndarray | None]:
    log = out / (re.sub(r"[^\w.]+", "-", name).strip("-") + ".h5")
    log.unlink(missing_ok=True)
    protocol = protocol_module.load(path, overrides)
    started = time.perf_counter()
    protocol.experiment_cls(protocol).run(log, progress=False)
    seconds = time.perf_counter() - started
    numbers = analyze(log)
    with open_run(log) as run:
        last = run.best_per_generation()[-1]
        stimuli = run.rendered([0, last]).astype(np.float64)
        extra = probability(run.config["neuron"], stimuli)
        image = as_rgb(stimuli[1], run.config["space"].get("value_range")) if run.modality == "image" else None
    judges = numbers.get("judges", {})
    said = "; ".join(f"{judge}: {judges['source'][judge]['heard'][0]!r} -> {judges['dream'][judge]['heard'][0]!r}"
                     + (f" (alone, what it added: {judges['added'][judge]['heard'][0]!r})" if "added" in judges else "")
                     for judge in judges.get("source", {}))
    change = f", change {numbers['change_db']:.1f} dB re the recording" if "change_db" in numbers else ""
    line = (f"{name}: {numbers['source_response']:.4g} -> {numbers['dream_response']:.4g} {extra}; distance at "
            f"most {numbers['largest_distance']:.4g} (bound {numbers['distance_bound']:g}){change}; "
            f"{numbers['presentations']} presentations in {seconds:.0f} s; {said or 'no judge'}")
    return line, image


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=0, help="run both shipped protocols with seeds 0..N-1")
    parser.add_argument("--variants", action="store_true", help="run the variants listed in VARIANTS")
    parser.add_argument("--only", choices=["picture", "speech"], help="run only the picture or only the speech dreams")
    parser.add_argument("--out", type=Path, default=Path("data/dreams"))
    parser.add_argument("--figure", type=Path, help="the last step of every picture run, side by side")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    runs = [(path, f"{path.stem} seed {s}", {"seed": s}) for path in (PICTURE, SPEECH) for s in range(args.seeds)]
    runs += VARIANTS if args.variants else []
    if args.only:
        runs = [run for run in runs if run[0] == {"picture": PICTURE, "speech": SPEECH}[args.only]]
    pictures = []
    for path, name, overrides in runs:
        line, image = dream(path, name, overrides, args.out)
        print(line, flush=True)
        if image is not None and (" seed " not in name or name.endswith(" seed 0")):
            pictures.append((name, image))
    if args.figure and pictures:
        fig, axes = subplots(1, len(pictures), figsize=(1.9 * len(pictures), 2.3), squeeze=False)
        for ax, (name, image) in zip(axes[0], pictures):
            ax.imshow(image)
            ax.set_title(name, fontsize=8)
            ax.axis("off")
        print(f"figure: {save(fig, args.figure)}")


if __name__ == "__main__":
    main()
