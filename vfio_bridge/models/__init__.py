"""Device models shipped with xvpci, by name."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from ..device import DeviceModel
from ..transaction import Transaction
from . import edu_transactions, nvme_transactions
from .edu import Edu
from .nvme import Nvme
from .window import VmdWindow

MODELS: dict[str, type[DeviceModel]] = {cls.name: cls for cls in (Edu, Nvme, VmdWindow)}

#: Transaction decoders by model name: ``decode(header, events)`` yields the
#: transactions of a log (see :mod:`vfio_bridge.transaction`).
DECODERS: dict[
    str, Callable[[Mapping[str, Any], Iterable[Mapping[str, Any]]], Iterator[Transaction]]
] = {
    Edu.name: edu_transactions.decode,
    Nvme.name: nvme_transactions.decode,
}


def get_model(name: str) -> type[DeviceModel]:
    """The model class called ``name``; ``KeyError`` lists the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise KeyError(f"unknown model {name!r} (known: {known})") from None


def parse_options(model_cls: type[DeviceModel], pairs: Sequence[str]) -> dict[str, Any]:
    """Turn ``NAME=VALUE`` strings into typed model options; ValueError on bad input."""
    known = {opt.name: opt for opt in model_cls.options}
    options: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"option {pair!r} is not NAME=VALUE")
        if name not in known:
            names = ", ".join(known) or "none"
            raise ValueError(f"model {model_cls.name} has no option {name!r} (options: {names})")
        try:
            options[name] = known[name].parse(value)
        except ValueError as exc:
            raise ValueError(f"option {name}: {exc}") from None
    return options


def create_model(name: str, pairs: Sequence[str] = ()) -> DeviceModel:
    """Instantiate model ``name`` with ``NAME=VALUE`` options (KeyError, ValueError)."""
    cls = get_model(name)
    return cls(**parse_options(cls, pairs))


__all__ = ["DECODERS", "MODELS", "create_model", "get_model", "parse_options"]
