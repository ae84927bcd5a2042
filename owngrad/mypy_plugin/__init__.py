"""A mypy plugin for the borrow and graph rules that depend on the order of statements. Enable it with
``plugins = owngrad.mypy_plugin`` in the ``[mypy]`` section. Errors have the code ``owngrad-borrow``:

- an in-place write (any writer the stubs declare: a method whose ``self`` is ``Tensor[Mut]``, ``t[k] = v``,
  ``+= -= *= /= **=``), an optimizer step over it, or a ``load_state_dict`` into it, while a pending result
  saved the storage written (the alternating-update / GAN bug);
- an in-place write into a param of a value with gradient history outside ``no_grad``;
- ``g.backward(r)`` when ``r`` was already consumed by an earlier backward or free without ``retain``;
- ``opt.step(grads)`` where ``grads`` come from a loss that depends on none of ``opt``'s params.

It is a dataflow analysis (the design is in docs/static-checking.md):

- ``cfg``: a control-flow graph per function;
- ``lattice``: abstract objects (one per allocation site: params, constants, modules and their
  attributes, op results, views, gradient handles), storage locations with constant or symbolic
  regions, and per program point a state (names to sets of objects; each result pending, consumed, or
  either on different paths), with its join;
- ``transfer`` and ``effects``: one transfer function per kind of operation, and the checks;
- ``analysis``: the worklist fixed point, then one reporting pass; diagnostics are computed once per
  function and cached; a call of a user function (function, method, property, a module's ``forward``)
  replays that function's *summary* (``calls``), computed on demand, so callees are summarised before
  their callers (bottom-up over the call graph; recursion makes a call opaque).

The plugin reports at hooks on the calls it sees (writers, ``step``, ``backward``, ``load_state_dict``,
user functions and methods), so a diagnostic shows at the line of the call that fails at run time.
Summaries need function bodies, which mypy's cache does not keep, so the plugin asks mypy to re-check
the user's own modules on every run (library modules stay cached), and to keep their syntax trees.

mypy's plugin API is experimental; this plugin is tested with the oldest mypy the project declares (1.10)
and the current 2.x.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from mypy.errorcodes import ErrorCode
from mypy.nodes import Context, FuncDef, MypyFile, TypeInfo
from mypy.options import Options
from mypy.plugin import FunctionContext, MethodContext, Plugin, ReportConfigContext
from mypy.types import Type

from .analysis import Context as FlowContext
from .tables import TENSOR, writers_of

__all__ = ["OWNGRAD_BORROW", "OwngradPlugin", "plugin"]

OWNGRAD_BORROW = ErrorCode(
    "owngrad-borrow", "In-place write while a result that depends on it waits for backward", "owngrad")

#: calls into these never carry an owngrad-borrow diagnostic: no hook
_NO_HOOK = ("builtins.", "typing.", "typing_extensions.", "numpy.", "collections.", "abc.", "functools.",
            "itertools.", "contextlib.", "dataclasses.", "enum.", "os.", "math.", "re.", "json.", "time.")


class OwngradPlugin(Plugin):
    """Adds the flow-sensitive ``owngrad-borrow`` checks; see the module docstring."""

    _token = str(time.time_ns())

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        # Summaries read the bodies of functions in other modules of the project; mypy 2.x frees a module's
        # syntax tree once the module is checked unless asked to keep it.
        options.preserve_asts = True
        self._context: FlowContext | None = None

    def context(self) -> FlowContext | None:
        """The per-run state (CFGs, summaries, diagnostics), made once the stubs are loaded."""
        if self._context is None:
            sym = self.lookup_fully_qualified(TENSOR)
            if sym is None or not isinstance(sym.node, TypeInfo):
                return None
            self._context = FlowContext(writers_of(sym.node))
        return self._context

    def get_method_hook(self, fullname: str) -> Callable[[MethodContext], Type] | None:
        return None if fullname.startswith(_NO_HOOK) else self._report

    def get_function_hook(self, fullname: str) -> Callable[[FunctionContext], Type] | None:
        return None if fullname.startswith(_NO_HOOK) else self._report

    def _report(self, ctx: MethodContext | FunctionContext) -> Type:
        """Reports every diagnostic of the enclosing function (computed once) at their own lines, from the
        first hook in it."""
        context = self.context()
        scope = _scope(ctx)
        if context is None or scope is None or scope in context.reported or _library(ctx):
            return ctx.default_return_type
        context.reported.add(scope)
        try:
            diagnostics = context.diagnose(scope)
        except Exception as exc:  # a bug of the plugin must not stop the type check: say so, and go on
            _fail_unwatched(ctx, f"owngrad plugin: this function was not analysed ({type(exc).__name__}: {exc}); "
                                 f"please report it", scope.line, note=True)
            return ctx.default_return_type
        for line, messages in sorted(diagnostics.items()):
            for message in messages:
                _fail_unwatched(ctx, message, line)
        return ctx.default_return_type

    def report_config_data(self, ctx: ReportConfigContext) -> object:
        """A user's module is re-checked on every run: summaries need the bodies of the functions it calls."""
        path = ctx.path.replace(os.sep, "/")
        if ctx.id.split(".")[0] in ("owngrad", "numpy") or "site-packages" in path or "typeshed" in path:
            return None
        return self._token


def _library(ctx: MethodContext | FunctionContext) -> bool:
    """Code of an installed library (its errors are not the user's): not analysed."""
    path = str(getattr(ctx.api, "path", "")).replace(os.sep, "/")
    return "site-packages" in path or "typeshed" in path


def _fail_unwatched(ctx: MethodContext | FunctionContext, message: str, line: int, note: bool = False) -> None:
    """Reports past mypy's error watchers. mypy watches errors while it tries alternatives (an operator's
    reflected method, an overload, a loop body until its types settle) and decides by whether any came: a
    diagnostic of ours reported then would change that choice, or be dropped with the attempt."""
    errors = getattr(getattr(ctx.api, "msg", None), "errors", None)
    watchers = getattr(errors, "_watchers", None)
    if errors is not None and watchers:
        errors._watchers = []
    try:
        if note:
            ctx.api.msg.note(message, Context(line=line, column=0), code=OWNGRAD_BORROW)
        else:
            ctx.api.fail(message, Context(line=line, column=0), code=OWNGRAD_BORROW)
    finally:
        if errors is not None and watchers:
            errors._watchers = watchers


def _scope(ctx: MethodContext | FunctionContext) -> FuncDef | MypyFile | None:
    """The function (or module top level) whose body holds the call being checked."""
    stack = getattr(getattr(ctx.api, "scope", None), "stack", None)
    for item in reversed(stack or ()):
        if isinstance(item, FuncDef):
            return item
        if isinstance(item, MypyFile):
            return item
        if isinstance(item, TypeInfo):
            return None  # a class body
        return None  # a lambda: another scope, not analysed
    return None


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point (``plugins = owngrad.mypy_plugin``)."""
    return OwngradPlugin
