"""Kinds are found by name without importing their siblings, and other packages add kinds."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from closedloop import registry

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, env=None, cwd=None) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, cwd=cwd, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_every_module_declares_exactly_the_kinds_the_index_names():
    """The index reads decorators from the sources; importing the modules must agree with it."""
    import importlib

    for role in registry.ROLES:
        for name, module in registry.index(role).items():
            importlib.import_module(module)
            assert registry.lookup(role, name).kind == name


@pytest.mark.slow
def test_a_spiking_run_and_its_report_never_import_torch_scipy_signal_ndimage_or_pyplot(tmp_path):
    out = _python(f"""
        import json, sys
        from closedloop import protocol
        from closedloop.analysis import analyze
        p = protocol.load({str(ROOT / 'protocols' / 'quickstart.yaml')!r}, {{"generations": 2, "retest": None}})
        p.experiment_cls(p).run({str(tmp_path / 'q.h5')!r}, progress=False)
        analyze({str(tmp_path / 'q.h5')!r})
        print(json.dumps([m for m in ("torch", "scipy.signal", "scipy.ndimage", "cma", "sklearn", "matplotlib.pyplot")
                          if m in sys.modules]))
    """)
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_another_package_adds_a_kind_through_an_entry_point(tmp_path):
    (tmp_path / "myspaces.py").write_text(textwrap.dedent("""
        import numpy as np
        from closedloop.spaces.base import StimulusSpace
        from closedloop.component import Settings

        class Flat(StimulusSpace):
            class Config(Settings):
                size: int = 4

            def __init__(self, config, seed):
                super().__init__(config, seed)
                self.dim, self.stimulus_shape = 1, (config.size, config.size)

            def render(self, z):
                return np.ones((len(z), *self.stimulus_shape)) * z[:, :1, None]
    """))
    info = tmp_path / "myspaces-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: myspaces\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[closedloop.spaces]\nflat = myspaces:Flat\n")
    out = _python("""
        import numpy as np
        from closedloop import protocol, registry
        print(registry.lookup("space", "flat").__name__, "flat" in registry.names("space"))
        p = protocol.parse("kind: evolve\\nneuron: {kind: lnp, size: 4}\\nspace: {kind: flat, size: 4}\\n"
                           "optimizer: {kind: random, popsize: 2}\\ngenerations: 1\\n")
        print(p.build("space").render(np.array([[2.0]])).sum())
    """, env={"PYTHONPATH": str(tmp_path)})
    assert out.split() == ["Flat", "True", "32.0"]


def test_an_unknown_kind_names_the_closest_ones():
    with pytest.raises(KeyError, match="did you mean 'fourier'"):
        registry.lookup("space", "fourrier")
