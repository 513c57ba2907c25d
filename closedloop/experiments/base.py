"""What every protocol kind shares: building the roles, the run log, checks and Ctrl-C."""

from __future__ import annotations

import functools
import inspect
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import Field

from closedloop.component import Settings, check_in_subclasses, nonfinite_rows
from closedloop.errors import ClosedLoopError, Interrupted, InvalidValueError, NeuronStopped, ProtocolError
from closedloop.recording.writer import RunWriter, parameter_columns


class ExperimentSettings(Settings):
    seed: int = Field(0, ge=0, le=2**63 - 1, description="fixes every random draw of the run")
    output: str | None = Field(None, description="run log path; default data/<protocol name>.h5")
    record_rendered: bool | None = Field(None, description="log every rendered stimulus; default when small")


def guarded_run(run):
    """run(path, ..., overwrite=False) for every kind: an experiment that writes one log runs once
    (its neuron and optimizer carry that run's state, so a second run would not repeat the first
    under the same seed), and an existing log is replaced only when asked (or continued, with
    resume=True). A kind that writes a folder builds each run afresh and may be run again."""
    signature = inspect.signature(run)

    @functools.wraps(run)
    def guarded(self, path=None, *args, overwrite: bool = False, **kwargs):
        if self.running or self.writes_directory:  # a subclass's run calling super().run: checked once
            return run(self, path, *args, **kwargs)
        if self.ran:
            raise ClosedLoopError(f"{self.protocol.source}: this experiment has run already, and its neuron and "
                                  f"optimizer kept that run's state: build a new one to run it again")
        resume = signature.bind(self, path, *args, **kwargs).arguments.get("resume", False)
        if path is not None and Path(path).resolve() == Path(str(self.protocol.source)).resolve():
            raise ClosedLoopError(f"{path}: is the protocol itself; give the log another path")
        if path is not None and not resume and not overwrite and Path(path).exists():
            raise ClosedLoopError(f"{path}: exists; a log is never overwritten unless you ask (overwrite=True)")
        self.ran = self.running = True
        try:
            return run(self, path, *args, **kwargs)
        finally:
            self.running = False

    return guarded


class Experiment:
    kind: ClassVar[str] = "?"
    Config: ClassVar[type[Settings]] = ExperimentSettings
    roles: ClassVar[tuple[str, ...]] = ("neuron", "space", "optimizer")
    resumable: ClassVar[bool] = False  # `closedloop resume` can continue it from its log
    # the experiment's random streams, by name, and the number that keys each one (fixed forever:
    # a log resumes to the same trials only if every stream draws the same numbers)
    streams: ClassVar[dict[str, int]] = {}
    analysis: ClassVar[str | None] = None  # module with analyze(run, out_dir); default closedloop.analysis.<kind>
    # True for a kind that writes a directory of logs it resumes into (a sweep), not one log
    writes_directory: ClassVar[bool] = False
    ran = running = False  # run() was called / is running: an experiment that writes one log runs once

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        check_in_subclasses(cls, "run", guarded_run)

    def __init__(self, protocol):
        self.protocol = protocol
        self.settings = protocol.settings
        self.neuron = protocol.build("neuron") if "neuron" in protocol.sections else None
        self.space = protocol.build("space") if "space" in protocol.sections else self.own_space()
        if self.neuron is not None and self.space is not None:
            if tuple(self.space.stimulus_shape) != tuple(self.neuron.stimulus_shape):
                wanted = tuple(self.neuron.stimulus_shape)
                raise ProtocolError(
                    f"{protocol.source}: space: {self.space.kind} renders stimuli of shape "
                    f"{tuple(self.space.stimulus_shape)} but the neuron takes {wanted}"
                    f"{suggest_space(wanted, self.neuron.modality, self.neuron.sample_rate)}")
            rendered, accepted = self.space.value_range, self.neuron.value_range
            if rendered is not None and accepted is not None and not (
                    accepted[0] <= rendered[0] and rendered[1] <= accepted[1]):
                raise ProtocolError(
                    f"{protocol.source}: space: renders values in {list(rendered)} but the neuron takes "
                    f"{list(accepted)}; set space.value_range")
        self.optimizer = (protocol.build("optimizer", space=self.space, neuron=self.neuron)
                          if "optimizer" in protocol.sections else None)
        self.stop_requested = 0  # or the number of the signal that asked the run to stop
        self.interruption: NeuronStopped | None = None  # why the neuron stopped the run, if it did

    def own_space(self):
        """The space of a kind whose protocol has no `space:` section but that builds its own
        from the neuron (a dream, around its source); None for the others."""
        return None

    def rng(self, stream: str, *index: int) -> np.random.Generator:
        """An independent generator for one named purpose (and, say, one chunk), fixed by the seed."""
        if stream not in self.streams:
            raise KeyError(f"experiment kind {self.kind!r} declares no random stream {stream!r}")
        return np.random.default_rng(np.random.SeedSequence([self.settings.seed, self.streams[stream], *index]))

    @classmethod
    def default_section(cls, role: str, sections: dict) -> dict | None:
        """The section a protocol may leave out (given the sections read so far), or None when
        the role's section is required."""
        return None

    def default_output(self) -> Path:
        if self.settings.output:
            return Path(self.settings.output)
        source = self.protocol.source
        if source.startswith("<"):  # a protocol from Python (a dict or YAML text) has no file name
            name = getattr(self.neuron, "log_name", None)
            return Path("data") / f"{self.kind}{'-' + name if name else ''}.h5"
        return Path("data") / f"{Path(source).stem}.h5"

    def open_log(self, path, state_shapes: dict[str, int] | None = None, created: str | None = None,
                 columns: tuple[str, ...] = ()) -> RunWriter:
        """The run log; `columns` are the kind's own numbers per generation, beside the optimizer's."""
        space, neuron = self.space, self.neuron
        record = self.settings.record_rendered
        if record is None:
            record = int(np.prod(space.stimulus_shape)) <= 64 * 64
        configs = {"experiment": {"kind": self.kind, **self.settings.model_dump(mode="json")}}
        for role in ("neuron", "space", "optimizer"):
            component = getattr(self, role)
            if component is not None:
                configs[role] = component.describe()
        return RunWriter(
            path, protocol_text=self.protocol.text, seed=self.settings.seed, kind=self.kind, configs=configs,
            dim=space.dim, stimulus_shape=space.stimulus_shape, modality=space.modality,
            response_unit=neuron.response_unit, state_columns=neuron.state_columns,
            status_columns=(*(self.optimizer.status_columns if self.optimizer else ()), *columns),
            state_shapes=state_shapes, record_rendered=record, sample_rate=space.sample_rate,
            neuron_arrays=neuron.ground_truth(), created=created, claim=neuron.claim,
            protocol_dir=self.protocol.directory, state_units=neuron.state_units,
            latent_columns=parameter_columns(configs["space"]))

    @contextmanager
    def stop_on_interrupt(self):
        """Ctrl-C (SIGINT) or SIGTERM (what batch schedulers send) asks the loop to stop after the
        generation in flight, which is then logged; `stop_requested` holds the signal's number.
        The same signal again stops at once (the generation in flight is dropped). A neuron that
        raises NeuronStopped (a rig that stopped answering) stops the run at once, the generation
        in flight unlogged: the run ends interrupted, and resume continues it."""
        def ask_to_stop(signum, frame):
            if self.stop_requested:
                raise Interrupted(signum)
            self.stop_requested = signum

        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[signum] = signal.signal(signum, ask_to_stop)
            except ValueError:  # not the main thread
                pass
        try:
            yield
        except NeuronStopped as exc:
            self.stop_requested, self.interruption = True, exc
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    @contextmanager
    def logging_to(self, writer: RunWriter, bar):
        """The body of a run: it stops at a generation's end on a signal (stop_on_interrupt), and
        the log is closed whatever happens, as complete, interrupted or failed (`self.log_status`)."""
        self.log_status = "failed"
        try:
            with self.stop_on_interrupt():
                yield
            self.log_status = self.final_status()
        except KeyboardInterrupt:
            self.log_status = "interrupted"
            raise
        finally:
            bar.close()
            writer.close(self.log_status)

    def final_status(self) -> str:
        return "interrupted" if self.stop_requested else "complete"

    def summary(self, status: str, path, **numbers) -> dict:
        """What run() returns: the status, the log, and the signal that stopped the run, if any."""
        stopped = {} if self.interruption is None else {"reason": str(self.interruption)}
        if status == "interrupted" and self.stop_requested and self.interruption is None:  # True (asked by code, not a signal) counts as Ctrl-C
            stopped["signal"] = signal.SIGINT if self.stop_requested is True else int(self.stop_requested)
        return {"status": status, "log": str(path), **stopped, **numbers}

    def run(self, path, progress: bool = True) -> dict:
        raise NotImplementedError

    def report(self, out, summary: dict, echo=print) -> None:
        from closedloop.analysis import report_run

        report_run(out, echo=echo)


def suggest_space(shape: tuple[int, ...], modality: str, sample_rate: int | None) -> str:
    """'; use space: {...}' naming a space that renders this shape, or '' when none is obvious."""
    if modality == "audio" and len(shape) == 1:
        seconds = shape[0] / sample_rate if sample_rate else None
        return (f"; use a sound space of that length, e.g. space: {{kind: waveform, duration: {seconds:g}}}"
                if seconds else "")
    if len(shape) == 2 and shape[0] == shape[1]:
        return f"; use space: {{kind: fourier, size: {shape[0]}}} (or pixels)"
    if len(shape) == 3 and shape[1] == shape[2]:
        return (f"; use space: {{kind: color_fourier, channels: {shape[0]}, size: {shape[1]}}} "
                "(or color_pixels)")
    return ""


def check_finite(values: np.ndarray, what: str) -> None:
    rows = nonfinite_rows(values)
    if rows:
        count = int((~np.isfinite(np.asarray(values, dtype=np.float64))).sum())
        raise InvalidValueError(f"{what}: {count} NaN or Inf values (in rows {rows})")
