"""Device models shipped with xvpci, by name."""

from __future__ import annotations

from ..model import DeviceModel
from .edu import Edu
from .nvme import Nvme

MODELS: dict[str, type[DeviceModel]] = {cls.name: cls for cls in (Edu, Nvme)}


def get_model(name: str) -> type[DeviceModel]:
    """The model class called ``name``; ``KeyError`` lists the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise KeyError(f"unknown model {name!r} (known: {known})") from None


__all__ = ["MODELS", "get_model"]
