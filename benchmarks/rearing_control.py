"""What the rearing experiment's search threshold means: the held-out digits of the unit's class,
as drawn and as the search's space renders them, scored by each reared network and by the
independent digit judge. Prints the control quoted in docs/tour.md ("Rearing").

    PYTHONPATH=$PWD python benchmarks/rearing_control.py [protocols/rearing.yaml]
"""

from __future__ import annotations

import sys

import numpy as np

from closedloop import protocol as protocol_module
from closedloop.judges import judges_for
from closedloop.registry import lookup
from closedloop.zoo import digits


def main(path: str = "protocols/rearing.yaml") -> None:
    protocol = protocol_module.load(path)
    experiment = protocol.experiment_cls(protocol)
    cfg = experiment.settings
    _, _, x_test, y_test = digits.dataset()
    drawn = x_test[y_test == cfg.digit].astype(np.float64)
    section = dict(cfg.evolve.space)
    space_cls = lookup("space", section.pop("kind"))
    space = space_cls(space_cls.Config(**section), 0)
    shown = {"as drawn": drawn, "in the search space": space.render(space.encode(drawn))}
    threshold = cfg.evolve.threshold
    for what, images in shown.items():
        verdicts = ", ".join(f"{judge.kind} accepts {sum(v.accepted for v in judge.judge(images, cfg.digit))}"
                             for judge in judges_for("digit"))
        print(f"{len(images)} held-out {cfg.digit}s {what}: {verdicts or 'no digit judge'}")
        for name in cfg.conditions:
            section = {**experiment.neuron_section(name), "readout": "probability"}
            neuron_cls = lookup("neuron", section.pop("kind"))
            neuron = neuron_cls(neuron_cls.Config(**section), 0)
            p = neuron.activation(images)
            print(f"  {name}: median p({cfg.digit}) {np.median(p):.3g}, above {threshold:g} for "
                  f"{int((p > threshold).sum())} of {len(p)}")


if __name__ == "__main__":
    main(*sys.argv[1:])
