"""Independent judges: what a hallucination *is*, by a verdict that shares nothing with the network.

A unit of a network says what it detects (its `claim`, e.g. ("face", None), ("digit", 3),
("word", "yes"), ("pitch", 440.0)); the analysis asks every judge registered for that claim's
category about the best stimuli. The search never sees a judge.
"""

from closedloop.judges.base import Judge, Verdict

__all__ = ["Judge", "Verdict"]


def judges_for(category: str) -> list[Judge]:
    """Every registered judge of this claim category ("face", "digit", "word", "pitch")."""
    from closedloop import registry

    found = []
    for name in registry.names("judge"):
        cls = registry.lookup("judge", name)
        if cls.category == category:
            found.append(cls())
    return found
