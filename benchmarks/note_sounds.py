"""What the C4 note unit gives for plain sounds, and what the best sounds of hear-note runs hold.

First, reference sounds rendered in hear-note.yaml's own space (sinusoids on a 20 Hz grid, 60-2000
Hz, so 260 Hz is the line nearest C4's 261.6 Hz): a harmonic tone, a sine, two tones a fourth
apart; for each the unit's response and the pitch judge's verdict. Then, for every run log given,
the best sound of the run: its response, the judge's verdict, and where its power lies. For a
waveform-space run the power per grid line comes from the latent (the share at multiples of
260 Hz and the strongest lines); for a harmonic- or instrument-space run, the f0 and the power
per harmonic (and for an instrument, its spectral slope and resonances).

    PYTHONPATH=$PWD python benchmarks/note_sounds.py [data/hear-note.h5 data/hear-note-harmonic.h5 ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from closedloop import protocol as protocol_module
from closedloop.judges.pitch import PitchJudge
from closedloop.recording import open_run

HEAR_NOTE = Path(__file__).resolve().parents[1] / "protocols" / "hear-note.yaml"
GRID_C4 = 260.0


def verdict(wave, expected) -> str:
    v = PitchJudge().judge(wave[None], expected, 16000)[0]
    return f"judge {'accepts' if v.accepted else 'refuses'}: {v.heard}"


def references():
    protocol = protocol_module.load(HEAR_NOTE)
    experiment = protocol.experiment_cls(protocol)
    space, neuron = experiment.space, experiment.neuron
    f, n = space.frequencies, len(space.frequencies)
    scale = (f / f[0]) ** -space.config.alpha

    def tones(levels: dict[float, float], harmonics: int = 7):
        z = np.zeros(2 * n)
        for f0, level in levels.items():
            for k in range(1, harmonics + 1):
                line = np.nonzero(np.isclose(f, k * f0))[0]
                if len(line):
                    z[n + line[0]] += level / k / scale[line[0]]
        return z

    cases = {"260 Hz harmonic tone (7 harmonics, 1/k)": tones({GRID_C4: 1.0}),
             "260 Hz sine": tones({GRID_C4: 1.0}, harmonics=1),
             "260 Hz and 200 Hz harmonic tones (0.6)": tones({GRID_C4: 1.0, 200.0: 0.6})}
    waves = space.render(np.stack(list(cases.values())))
    for (name, _), wave, response in zip(cases.items(), waves, neuron.activation(waves)):
        print(f"{name}: unit {response:.3f}; {verdict(wave, 261.63)}")


def best_sound(path: Path):
    with open_run(path) as run:
        best = int(run.generations["best_stimulus"].iloc[-1])
        response = float(run.generations["best"].iloc[-1])
        wave = run.rendered([best])[0]
        z = run.z[best].astype(np.float64)
        claim = run.claim
        space = protocol_module.parse(run.protocol, str(run.path)).build("space")
    line = f"{path}: best {response:.3f}; {verdict(wave, claim[1])}"
    if space.kind == "waveform":
        f, n = space.frequencies, len(space.frequencies)
        power = (z[:n] ** 2 + z[n:] ** 2) * ((f / f[0]) ** -space.config.alpha) ** 2
        power /= power.sum()
        top = np.argsort(power)[::-1][:5]
        line += (f"; {power[np.isclose(f % GRID_C4, 0)].sum():.0%} of the power at k x {GRID_C4:g} Hz; strongest "
                 + ", ".join(f"{f[i]:.0f} Hz {power[i]:.0%}" for i in top))
    elif space.kind in ("harmonic", "instrument"):
        parameters = space.parameters(z[None])
        f0, power = float(parameters["f0"][0, 0]), parameters["amplitudes"][0] ** 2
        power /= power.sum()
        top = np.argsort(power)[::-1][:3]
        line += f"; f0 {f0:.1f} Hz, power in harmonic " + ", ".join(
            f"{k + 1} ({(k + 1) * f0:.0f} Hz) {power[k]:.0%}" for k in top)
        if space.kind == "instrument":
            line += f"; tilt {float(parameters['tilt'][0, 0]):.1f} dB/octave, resonances " + ", ".join(
                f"{c:.0f} Hz ({b:.0f} Hz wide, {g:+.1f} dB)" for c, b, g in
                zip(parameters["centre"][0], parameters["bandwidth"][0], parameters["gain"][0]))
    print(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="hear-note or hear-note-harmonic run logs")
    args = parser.parse_args()
    references()
    for path in args.runs:
        best_sound(path)


if __name__ == "__main__":
    main()
