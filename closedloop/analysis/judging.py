"""What independent judges say of a run's stimuli (closedloop/judges): shared by the analyses.

The unit's claim, logged with the run, names the category and the expected value; every judge of
that category gives one verdict per stimulus. The search never saw these verdicts.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from closedloop.judges import judges_for


def judge_stimuli(run, stimuli: np.ndarray, what: str, best_first: bool = False) -> tuple[dict, list[str]]:
    """Verdicts of every judge of the run's claim on `stimuli` (as the unit saw them).
    Returns ({judge: {accepted, of, heard, verdicts}, "all": ...}, lines to print); empty when
    nothing is claimed. With `best_first`, the first stimulus is the run's best and its verdicts
    are named apart; with several judges, "all" counts the stimuli every judge accepts."""
    claim = run.claim
    if claim is None or stimuli is None or len(stimuli) == 0:
        return {}, []
    category, expected = claim
    target = category if expected is None else f"{category} {expected}"
    numbers, lines, together = {}, [], np.ones(len(stimuli), dtype=bool)
    for judge in judges_for(category):
        verdicts = judge.judge(np.asarray(stimuli), expected, run.sample_rate or None)
        accepted = np.array([v.accepted for v in verdicts], dtype=bool)
        together &= accepted
        heard = Counter(v.heard for v in verdicts).most_common(3)
        numbers[judge.kind] = {"accepted": int(accepted.sum()), "of": len(verdicts),
                               "heard": [v.heard for v in verdicts], "verdicts": accepted.tolist()}
        best = f" (the best: {_yes(accepted[0])}, {verdicts[0].heard})" if best_first else ""
        lines.append(f"judge {judge.kind} (shares nothing with the unit): {accepted.sum()} of {len(verdicts)} {what} "
                     f"accepted as {target}{best}; it says: " + ", ".join(f"{h} x{c}" for h, c in heard))
    if len(numbers) > 1:
        numbers["all"] = {"accepted": int(together.sum()), "of": len(stimuli), "verdicts": together.tolist()}
        best = f" (the best: {_yes(together[0])})" if best_first else ""
        lines.append(f"every {category} judge accepts {together.sum()} of {len(stimuli)} {what}{best}")
    return numbers, lines


def _yes(accepted) -> str:
    return "accepted" if accepted else "refused"
