"""The same protocol and seed give the same log: every shipped protocol, run short, against the log
the same short run wrote at a known-good revision (tests/fixture_logs.py)."""

import pytest

from fixture_logs import FIXTURES, differences, protocols, run_short


@pytest.mark.slow
@pytest.mark.parametrize("path", protocols(), ids=lambda p: p.stem)
def test_shipped_protocol_logs_the_same_trials_as_its_fixture(path, tmp_path):
    expected = FIXTURES / path.stem if (FIXTURES / path.stem).is_dir() else FIXTURES / f"{path.stem}.h5"
    assert expected.exists(), f"no fixture for {path.name}: run python tests/fixture_logs.py {path.stem}"
    actual = run_short(path, tmp_path / expected.name)
    assert differences(expected, actual) == []
