"""The ``occlusion-widget map`` options of every method, generated from the method registry
(:data:`~occlusion_widget.methods.registry.METHODS`): one option per distinct parameter name,
parsed by the parameter's kind, and refused (one line) when the chosen method lacks it.
"""

from __future__ import annotations

import argparse
from typing import Any


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def _pair(text: str, name: str) -> int | tuple[int, int] | str:
    if text == "auto":
        return text
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        raise CliError(f"--{name}: expected 'auto', N or H,W with integers, got {text!r}") from None
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise CliError(f"--{name}: expected 'auto', N or H,W, got {text!r}")


def _mask_value(text: str) -> float | list[float] | str:
    if text in ("auto", "blur"):
        return text
    try:
        values = [float(p) for p in text.split(",")]
    except ValueError:
        raise CliError(f"--mask-value: expected 'auto', 'blur', a number or R,G,B, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def _numbers(text: str, flag: str) -> float | tuple[float, ...]:
    try:
        values = [float(p) for p in text.split(",")]
    except ValueError:
        raise CliError(f"{flag}: expected a number or R,G,B, got {text!r}") from None
    return values[0] if len(values) == 1 else tuple(values)


def option(name: str) -> str:
    return "--" + name.replace("_", "-")


def method_options() -> dict[str, list]:
    """Every method parameter offered as an option: ``{name: [(method, MethodParam) of each method that has it]}``."""
    from .methods.registry import METHODS

    options: dict[str, list] = {}
    for spec in METHODS.values():
        for p in spec.params:
            options.setdefault(p.name, []).append((spec.name, p))
    return options


def parse_method(text: str) -> str:
    from .methods.registry import METHODS

    name = text.strip().lower().replace("-", "_")
    if name not in METHODS:
        raise argparse.ArgumentTypeError(f"unknown method {text!r}; use one of {', '.join(m.replace('_', '-') for m in METHODS)}")
    return name


def methods_help() -> str:
    from .methods.registry import METHODS

    lines = ["methods (--method) and their options:"]
    for spec in METHODS.values():
        options = " ".join(option(p.name) for p in spec.params)
        lines.append(f"  {spec.name.replace('_', '-'):22} {spec.title}: {options}")
    return "\n".join(lines) + "\n"


def add_method_options(m: argparse.ArgumentParser) -> None:
    """One option per distinct parameter name over all methods, from the registry; default None:
    the chosen method's own default. Values are checked by the method's function."""
    group = m.add_argument_group("method options (each applies to the methods named in its help)")
    for name, owners in method_options().items():
        p = owners[0][1]
        which = ", ".join(method.replace("_", "-") for method, _ in owners)
        help_text = f"{p.help} [{which}]".replace("%", "%%")
        kwargs: dict[str, Any] = {"default": None, "dest": name, "help": help_text}
        if p.kind == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif p.kind == "int":
            kwargs.update(type=int, metavar="N")
        elif p.kind == "float":
            kwargs.update(type=float, metavar="X")
        elif p.kind == "choice":
            kwargs["choices"] = tuple(dict.fromkeys(c for _, q in owners for c in q.choices))
        else:  # size, fill, baseline, layer: parsed in check_map_args (one-line errors)
            kwargs["metavar"] = {"size": "N|H,W|auto", "fill": "auto|blur|V|R,G,B", "baseline": "V|R,G,B",
                                 "layer": "NAME"}[p.kind]
        group.add_argument(option(name), **kwargs)
        if name == "mask_clipping":  # the older spelling stays
            group.add_argument("--no-clipping", dest=name, action="store_false", default=None,
                               help="the same as --no-mask-clipping")


def method_params(args: argparse.Namespace) -> dict[str, Any]:
    """The chosen method's parameters given on the command line, parsed; an option of another method is an error."""
    from .methods.registry import get_method

    spec = get_method(args.method)
    params: dict[str, Any] = {}
    for name, owners in method_options().items():
        value = getattr(args, name)
        if value is None:
            continue
        flag = option(name)
        if name not in spec.param_names:
            which = ", ".join(method.replace("_", "-") for method, _ in owners)
            raise CliError(f"{flag} is not a parameter of {args.method.replace('_', '-')}; it belongs to {which}")
        p = spec.param(name)
        if p.kind in ("int", "float") and p.minimum is not None and value < p.minimum:
            allowed = "a positive integer" if p.kind == "int" and p.minimum == 1 else f"a number >= {p.minimum:g}"
            raise CliError(f"{flag} {value}: use {allowed}")
        if p.kind == "choice" and value not in p.choices:
            raise CliError(f"{flag} {value}: {args.method} takes one of {', '.join(p.choices)}")
        if p.kind == "size":
            value = _pair(value, name.replace("_", "-"))
        elif p.kind == "fill":
            value = _mask_value(value)
        elif p.kind == "baseline":
            value = _numbers(value, flag)
        params[name] = value
    return params


__all__ = ["CliError", "add_method_options", "method_options", "method_params", "methods_help", "option", "parse_method"]
