"""The optimizer base: parameter groups, the all-or-nothing step, and state dicts.

``opt.step(grads)`` updates the params in place. Each update is an untracked leaf write that
needs the param's exclusive borrow, so a step taken while a pending node still saved a param
(the old weights are needed by a backward that has not run yet) raises ``og.BorrowError`` at
the step. A step is all-or-nothing: every param's borrow is taken before anything is written,
so a refused step leaves every param and the optimizer's state as they were. Every update is
computed first (``update`` reads the param and returns ``(scale, delta)`` and the param's new
state, never writing in place), then all are committed together (``p *= scale; p -= delta``), so
an error while computing the third param's update changes nothing.

Parameter groups follow torch: ``SGD([{"params": a, "lr": 0.1}, {"params": b}], lr=0.01,
momentum=0.9)``; each group's hyper-parameters default to the constructor's, and
``opt.param_groups[i]["lr"] = ...`` takes effect at the next step (as schedulers do).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..backend import Array, to_device, xp_of
from ..errors import GradError, ShapeError
from ..grads import raw_gradients
from ..graph import Grads
from ..handle import array_of, arrays_of, check_writable, exclusive, is_param, label_of
from ..sites import user_site
from ..tensor import Tensor
from ..tracer import recorded

__all__ = ["Optimizer"]


class Optimizer:
    """Holds the params it updates (in order), their groups and per-param state.

    The extension point for a user's own optimizer: subclass it, list the hyper-parameters a group
    takes in ``hyper_keys`` and the per-param state entries in ``state_keys``, validate a group in
    :meth:`check_hyper` (call ``super().check_hyper(group)``), and compute one param's step in
    :meth:`update`. Pass the defaults to ``super().__init__(params, {"lr": lr, ...})``. The base class
    does the rest -- parameter groups, the all-or-nothing step under exclusive borrows, capture,
    ``state_dict`` -- and schedulers drive any subclass through ``param_groups``::

        class SignSGD(og.optim.Optimizer):
            hyper_keys = ("lr",)
            def __init__(self, params, lr=0.01):
                super().__init__(params, {"lr": lr})
            def update(self, p, g, state, group):
                return 1.0, group["lr"] * np.sign(g)
    """

    state_keys: tuple[str, ...] = ()
    hyper_keys: tuple[str, ...] = ("lr",)
    # a captured step: guards the params by identity, reads the hyper-parameters at each replay (a
    # change inside the step is a side effect it refuses), and replays the state's updates itself
    _capture_walk = True
    _capture_live: tuple[str, ...] = ("param_groups", "defaults")
    _capture_skip: tuple[str, ...] = ("state",)

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        name = type(self).__name__
        self.defaults = dict(defaults)
        groups = list(params) if not isinstance(params, Tensor) else [params]
        if groups and all(isinstance(gr, dict) for gr in groups):
            specs: list[dict[str, Any]] = [{**gr} for gr in groups if isinstance(gr, dict)]
        elif any(isinstance(gr, dict) for gr in groups):
            raise TypeError(f"{name}: params must be all tensors or all dicts (parameter groups), not a mix")
        else:
            specs = [{"params": groups}]
        self.param_groups: list[dict[str, Any]] = []
        self.params: list[Tensor] = []
        seen: set[int] = set()
        for spec in specs:
            self.param_groups.append(self._group(spec, seen))
        if not self.params:
            raise ValueError(f"{name}: got an empty list of params")
        self.state: list[dict[str, Any]] = [{} for _ in self.params]
        #: the group of each param (by position): membership is fixed, hyper-parameters may change
        self._group_of = [gi for gi, gr in enumerate(self.param_groups) for _ in gr["params"]]

    def _group(self, spec: dict[str, Any], seen: set[int]) -> dict[str, Any]:
        name = type(self).__name__
        if "params" not in spec:
            raise TypeError(f"{name}: a parameter group needs a 'params' entry")
        unknown = set(spec) - {"params", *self.hyper_keys}
        if unknown:
            raise TypeError(f"{name}: unknown hyper-parameters {sorted(unknown)} in a parameter group "
                            f"(known: {', '.join(self.hyper_keys)})")
        ps = spec["params"]
        ps = [ps] if isinstance(ps, Tensor) else list(ps)
        for p in ps:
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: params must be Tensors, got {type(p).__name__}")
            if not is_param(p):
                raise TypeError(f"{name}: {label_of(p)} is not a param (made by g.param); only params can be optimized")
            if id(p) in seen:
                raise ValueError(f"{name}: {label_of(p)} appears in more than one parameter group")
            seen.add(id(p))
            self.params.append(p)
        group = {**self.defaults, **{k: v for k, v in spec.items() if k != "params"}, "params": ps}
        self.check_hyper(group)
        return group

    def check_hyper(self, group: dict[str, Any]) -> None:
        """The hook that validates one group's hyper-parameters (and may normalise them in ``group``);
        called for every group at construction. Subclasses add their checks after ``super()``'s."""
        lr = group["lr"]
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
            raise TypeError(f"{type(self).__name__}: lr must be a number, got {type(lr).__name__} {lr!r}")
        if not float(lr) >= 0:
            raise ValueError(f"{type(self).__name__}: lr must be >= 0, got {lr}")

    # the first group's hyper-parameters as attributes (``opt.lr``), as a single-group optimizer reads
    def __getattr__(self, key: str) -> Any:
        if key in type(self).hyper_keys and "param_groups" in self.__dict__:
            return self.__dict__["param_groups"][0][key]
        raise AttributeError(f"{type(self).__name__} has no attribute {key!r}")

    def __setattr__(self, key: str, value: Any) -> None:
        if key in type(self).hyper_keys and "param_groups" in self.__dict__:
            for group in self.param_groups:  # opt.lr = x sets every group, as a schedule over all
                group[key] = value
            return
        object.__setattr__(self, key, value)

    def step(self, grads: Grads) -> None:
        """Update every param that has a gradient in ``grads`` (others are skipped, like torch's
        ``grad is None``). Raises BorrowError, before changing anything, if any of them cannot
        be written now; GradError if ``grads`` holds none of them."""
        if not isinstance(grads, Grads):
            raise TypeError(f"{type(self).__name__}.step: expected the og.Grads returned by g.backward(...), "
                            f"got {type(grads).__name__}")
        grads.wait()  # gradients still in flight (an all-reduce) are completed first
        site = user_site()
        what = f"{type(self).__name__}.step"
        index: list[int] = []
        stepped: list[Tensor] = []
        todo: list[Array] = []
        for i, (p, gd) in enumerate(zip(self.params, raw_gradients(grads, self.params))):
            if gd is not None:
                index.append(i)
                stepped.append(p)
                todo.append(gd)
        if not todo:
            raise GradError(self._nothing_to_step(grads, what))
        check_writable(stepped, site, what)
        arrays = arrays_of(stepped)
        for p, gd, arr in zip(stepped, todo, arrays):
            if gd.shape != arr.shape:
                raise ShapeError(f"{what}: gradient of shape {tuple(gd.shape)} for {label_of(p)} of shape {p.shape}")
        # take every borrow first: a refusal on the third param leaves the first two untouched
        with exclusive(stepped, site, what):
            # a captured step replays the update itself: state and hyper-parameters are read at replay
            recorded(stepped[0].graph, self._commit, tuple(index), arrays, *todo, writes=stepped)

    def _commit(self, index: tuple[int, ...], arrays: list[Array], *grads: Array) -> None:
        """Update ``arrays`` (the params at ``index``) with ``grads``. Every update is computed first, then
        committed: an error (or a KeyboardInterrupt) while computing the third param's update cannot leave
        the first two, or the state, half-stepped."""
        groups, group_of, update = self.param_groups, self._group_of, self.update
        old = self.state
        state = list(old)  # rebound, never changed in place: a snapshot of the list is a snapshot of it
        staged: list[tuple[int, Array, float, Array, dict[str, Any]]] = []
        for i, arr, gd in zip(index, arrays, grads):
            new_state = dict(old[i])  # update rebinds keys, never writes old arrays in place
            scale, delta = update(arr, gd, new_state, groups[group_of[i]])
            staged.append((i, arr, scale, delta, new_state))
        for i, arr, scale, delta, new_state in staged:
            if scale != 1.0:
                arr *= scale
            arr -= delta
            state[i] = new_state
        self.state = state

    def _nothing_to_step(self, grads: Grads, what: str) -> str:
        """The message for a step whose gradients hold none of this optimizer's params (a copy-paste
        slip such as ``opt_critic.step(grads_actor)``, which would otherwise silently do nothing)."""
        def names(ts: list[Tensor]) -> str:
            shown = ", ".join(label_of(t) for t in ts[:4])
            return shown + (f" and {len(ts) - 4} more" if len(ts) > 4 else "")
        held = list(grads)
        holds = f"gradients for {names(held)}" if held else "no gradients"
        return (f"{what}: the gradients hold none of this optimizer's params ({names(self.params)}); "
                f"they hold {holds}\n  help: step each optimizer with the Grads of a loss that depends on its "
                "params (g.backward(that_loss))")

    def update(self, p: Array, g: Array, state: dict[str, Any], group: dict[str, Any]) -> tuple[float, Array]:
        """The hook a subclass defines: the step for one param, as ``(scale, delta)`` meaning
        ``p = p * scale - delta``. ``p`` (read it, never write it) and ``g`` are the param's and its
        gradient's arrays (numpy or cupy), ``group`` its parameter group's hyper-parameters, ``state``
        a fresh copy of its state dict: put new state in by rebinding keys, never by writing the old
        arrays in place (a refused or failed step must leave the old state as it was)."""
        raise NotImplementedError

    # --- state dicts ---
    def state_dict(self) -> dict[str, Any]:
        """``{"type", "param_groups": [{hyper..., "params": [indices]}], "state": [{key: array or int}]}``
        (copies, host arrays)."""
        index = {id(p): i for i, p in enumerate(self.params)}
        groups = [{**{k: v for k, v in gr.items() if k != "params"}, "params": [index[id(p)] for p in gr["params"]]}
                  for gr in self.param_groups]
        state = [{k: (np.array(to_device(v, "cpu"), copy=True) if hasattr(v, "shape") else v) for k, v in st.items()}
                 for st in self.state]
        return {"type": type(self).__name__, "param_groups": groups, "state": state}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned. All-or-nothing: a mismatch raises before any change."""
        name = type(self).__name__
        if not isinstance(sd, dict) or set(sd) != {"type", "param_groups", "state"}:
            raise ValueError(f"{name}.load_state_dict: not an optimizer state dict (expected keys type, "
                             "param_groups, state)")
        if sd["type"] != name:
            raise ValueError(f"{name}.load_state_dict: the state is from a {sd['type']} optimizer")
        if len(sd["state"]) != len(self.params):
            raise ValueError(f"{name}.load_state_dict: the state has {len(sd['state'])} params, "
                             f"this optimizer {len(self.params)}")
        if len(sd["param_groups"]) != len(self.param_groups) or any(
                len(a["params"]) != len(b["params"]) for a, b in zip(sd["param_groups"], self.param_groups)):
            raise ValueError(f"{name}.load_state_dict: the parameter groups do not match this optimizer's")
        for gr in sd["param_groups"]:
            if not set(self.hyper_keys) <= set(gr):  # schedulers may add their own entries (initial_lr, ...)
                raise ValueError(f"{name}.load_state_dict: hyper-parameters {sorted(set(gr) - {'params'})} do not "
                                 f"include {sorted(self.hyper_keys)}")
        new_state = [self._loaded_state(i, p, st) for i, (p, st) in enumerate(zip(self.params, sd["state"]))]
        for mine, theirs in zip(self.param_groups, sd["param_groups"]):
            mine.update({k: v for k, v in theirs.items() if k != "params"})
        self.state = new_state

    def _loaded_state(self, i: int, p: Tensor, st: dict[str, Any]) -> dict[str, Any]:
        name = type(self).__name__
        if set(st) - set(self.state_keys):
            raise ValueError(f"{name}.load_state_dict: unexpected state {sorted(set(st) - set(self.state_keys))} "
                             f"for param {i}")
        out: dict[str, Any] = {}
        for k, v in st.items():
            if hasattr(v, "shape"):
                if tuple(v.shape) != p.shape:
                    raise ShapeError(f"{name}.load_state_dict: state {k!r} of param {i} has shape "
                                     f"{tuple(v.shape)}, the param {p.shape}")
                out[k] = xp_of(array_of(p)).asarray(to_device(np.asarray(v), p.device)).astype(p.dtype, copy=True)
            else:
                out[k] = v
        return out

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={self.param_groups[0][k]}" for k in self.hyper_keys)
        groups = f", {len(self.param_groups)} groups" if len(self.param_groups) > 1 else ""
        return f"{type(self).__name__}({len(self.params)} params{groups}, {hyper})"


def check_numbers(opt: Optimizer, group: dict[str, Any], *keys: str) -> None:
    """The named hyper-parameters of a group must be real numbers."""
    for k in keys:
        v = group[k]
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{type(opt).__name__}: {k} must be a number, got {type(v).__name__} {v!r}")
