"""What independent judges say of a run's stimuli (closedloop/judges): shared by the analyses.

The unit's claim, logged with the run, names the category and the expected value; every judge of
that category gives one verdict per stimulus. The search never saw these verdicts.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from closedloop.judges import judges_for


def judge_stimuli(run, stimuli: np.ndarray, what: str) -> tuple[dict, list[str]]:
    """Verdicts of every judge of the run's claim on `stimuli` (as the unit saw them).
    Returns ({judge: {accepted, of, heard}}, lines to print); empty when nothing is claimed."""
    claim = run.claim
    if claim is None or stimuli is None or len(stimuli) == 0:
        return {}, []
    category, expected = claim
    target = category if expected is None else f"{category} {expected}"
    numbers, lines = {}, []
    for judge in judges_for(category):
        verdicts = judge.judge(np.asarray(stimuli), expected, run.sample_rate or None)
        accepted = sum(v.accepted for v in verdicts)
        heard = Counter(v.heard for v in verdicts).most_common(3)
        numbers[judge.kind] = {"accepted": int(accepted), "of": len(verdicts),
                               "heard": [v.heard for v in verdicts]}
        lines.append(f"judge {judge.kind} (shares nothing with the unit): {accepted} of {len(verdicts)} {what} "
                     f"accepted as {target}; it says: " + ", ".join(f"{h} x{c}" for h, c in heard))
    return numbers, lines
