"""closedloop zoo [NAME]: the ready-made network units, their input contract and unit names."""

from __future__ import annotations

ORDER = 4


def input_contract(model) -> str:
    low, high = model.value_range
    if model.sample_rate:
        return (f"{model.modality}: mono waveform at {model.sample_rate} Hz, any length (default "
                f"{model.input_shape[0]} samples), values in [{low:g}, {high:g}]")
    shape = "x".join(str(n) for n in model.input_shape)
    return f"{model.modality}: {shape} (channels x rows x columns), values in [{low:g}, {high:g}]"


def describe(model, echo, all_units: bool) -> None:
    echo(f"{model.name}: {model.description}")
    echo(f"  input:   {input_contract(model)}")
    echo(f"  default: {model.default_unit}")
    if not all_units:
        echo(f"  units:   {', '.join(model.unit_examples())}")
        return
    echo(f"  units ({len(model.units)}{', and ' + model.extra_names_hint if model.extra_names_hint else ''}):")
    for name, spec in model.units.items():
        echo(f"    {name:<20} {spec.description}")


def execute(args) -> int:
    from closedloop import zoo
    from closedloop.errors import ClosedLoopError

    if args.name is not None:
        try:
            model = zoo.card(args.name)
        except ValueError as exc:
            raise ClosedLoopError(str(exc)) from None
        describe(model, print, all_units=True)
        return 0
    for name in zoo.names():
        describe(zoo.card(name), print, all_units=False)
        print()
    print("closedloop zoo NAME lists every unit of one model.")
    return 0


def add_parser(sub):
    parser = sub.add_parser("zoo", help="list the ready-made network units and their input contract")
    parser.add_argument("name", nargs="?", help="a zoo model: list all its units")
    parser.set_defaults(func=execute)
