"""Containers with torch's names and state_dict keys: :class:`ModuleList`, :class:`ModuleDict`,
:class:`ParameterList`. Items are registered as sub-modules (params) named ``"0"``, ``"1"``, ... or by
their key, so ``layers.0.weight`` is the key torch gives."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..handle import is_param
from ..tensor import Tensor
from .modules import Module

__all__ = ["ModuleList", "ModuleDict", "ParameterList"]


def _module(op: str, m: object) -> Module:
    if not isinstance(m, Module):
        raise TypeError(f"{op}: expected an og.nn.Module, got {type(m).__name__}")
    return m


def _index(op: str, i: int, n: int) -> int:
    if not -n <= i < n:
        raise IndexError(f"{op}: index {i} is out of range for {n} items")
    return i % n


class ModuleList(Module):
    """A list of modules (``forward`` is yours to write): ``append``, ``extend``, ``insert``, indexing,
    slicing (a new ModuleList of the same modules), ``len`` and iteration."""

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        self.extend(modules or [])

    def _items(self) -> list[Module]:
        return list(self.__dict__["_modules"].values())

    def _reset(self, items: list[Module]) -> None:
        for k in list(self.__dict__["_modules"]):
            delattr(self, k)
        for i, m in enumerate(items):
            setattr(self, str(i), m)

    def append(self, module: Module) -> ModuleList:
        setattr(self, str(len(self)), _module("ModuleList.append", module))
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        items = self._items()
        items.insert(index, _module("ModuleList.insert", module))
        self._reset(items)

    def __getitem__(self, i: int | slice) -> Any:
        items = self._items()
        if isinstance(i, slice):
            return ModuleList(items[i])
        return items[_index("ModuleList", i, len(items))]

    def __setitem__(self, i: int, module: Module) -> None:
        items = self._items()
        items[_index("ModuleList", i, len(items))] = _module("ModuleList", module)
        self._reset(items)

    def __delitem__(self, i: int) -> None:
        items = self._items()
        del items[_index("ModuleList", i, len(items))]
        self._reset(items)

    def __len__(self) -> int:
        return len(self.__dict__["_modules"])

    def __iter__(self) -> Iterator[Module]:
        return iter(self._items())


class ModuleDict(Module):
    """An ordered mapping of names to modules: ``md["enc"]``, ``in``, ``keys``/``values``/``items``, ``update``."""

    def __init__(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.update(modules)

    def update(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]]) -> None:
        pairs = modules.items() if isinstance(modules, Mapping) else modules
        for k, m in pairs:
            self[k] = m

    def __setitem__(self, key: str, module: Module) -> None:
        if not isinstance(key, str) or not key or "." in key:
            raise KeyError(f"ModuleDict: keys must be non-empty strings without '.', got {key!r}")
        setattr(self, key, _module("ModuleDict", module))

    def __getitem__(self, key: str) -> Module:
        mods: dict[str, Module] = self.__dict__["_modules"]
        if key not in mods:
            raise KeyError(f"ModuleDict has no module {key!r} (it has {sorted(mods)})")
        return mods[key]

    def __delitem__(self, key: str) -> None:
        self[key]  # noqa: B018  (the KeyError with the keys it has)
        delattr(self, key)

    def pop(self, key: str) -> Module:
        m = self[key]
        delattr(self, key)
        return m

    def __contains__(self, key: object) -> bool:
        return key in self.__dict__["_modules"]

    def __len__(self) -> int:
        return len(self.__dict__["_modules"])

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.__dict__["_modules"]))

    def keys(self) -> list[str]:
        return list(self.__dict__["_modules"])

    def values(self) -> list[Module]:
        return list(self.__dict__["_modules"].values())

    def items(self) -> list[tuple[str, Module]]:
        return list(self.__dict__["_modules"].items())


class ParameterList(Module):
    """A list of params (``g.param`` leaves), registered as ``"0"``, ``"1"``, ... as torch."""

    def __init__(self, params: Iterable[Tensor] | None = None) -> None:
        super().__init__()
        for p in params or []:
            self.append(p)

    def append(self, param: Tensor) -> ParameterList:
        if not is_param(param):
            raise TypeError(f"ParameterList.append: expected a param (made by g.param), got "
                            f"{'a tensor that is not a param' if isinstance(param, Tensor) else type(param).__name__}")
        setattr(self, str(len(self)), param)
        return self

    def extend(self, params: Iterable[Tensor]) -> ParameterList:
        for p in params:
            self.append(p)
        return self

    def __getitem__(self, i: int) -> Tensor:
        ps: dict[str, Tensor] = self.__dict__["_params"]
        return ps[str(_index("ParameterList", i, len(ps)))]

    def __setitem__(self, i: int, param: Tensor) -> None:
        if not is_param(param):
            raise TypeError("ParameterList: expected a param (made by g.param)")
        items = list(self)
        items[_index("ParameterList", i, len(items))] = param
        for k in list(self.__dict__["_params"]):
            delattr(self, k)
        self.extend(items)

    def __len__(self) -> int:
        return len(self.__dict__["_params"])

    def __iter__(self) -> Iterator[Tensor]:
        return iter([self[i] for i in range(len(self))])
