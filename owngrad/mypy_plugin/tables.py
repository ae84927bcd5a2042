"""What the flow check knows of owngrad's API: declared types, classified; which ops save what.

The writers are not listed here: they are read from the stubs (every method of ``Tensor`` whose
``self`` is ``Tensor[Mut]``), see :func:`writers_of`. The tables say what a recorded op saves for its
backward (section "Borrows" of the docs: a node saves only what its inputs' gradients need); an op
missing from them saves every tensor it reads (the conservative choice).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mypy.nodes import FUNC_NO_INFO, Decorator, FuncDef, OverloadedFuncDef, TypeInfo
from mypy.types import AnyType, CallableType, Instance, NoneType, TupleType, Type, UnionType, get_proper_type

TENSOR = "owngrad.tensor.Tensor"
MODULE = "owngrad.nn.modules.Module"
OPTIMIZER = "owngrad.optim.Optimizer"
GRAPH = "owngrad.graph.Graph"
GRADS = "owngrad.graph.Grads"
MUT = "owngrad.modes.Mut"


class TypeClass(enum.Enum):
    PLAIN = "plain"  # holds no tensor: numbers, strings, arrays, None, callables
    TENSOR = "tensor"
    MODULE = "module"
    OPTIMIZER = "optimizer"
    GRAPH = "graph"
    GRADS = "grads"
    CONTAINER = "container"  # list, dict, Sequence, Iterator ...: ``elem`` is its element type
    TUPLE = "tuple"  # ``items`` are its positions
    OBJECT = "object"  # a user class or Protocol: its attributes and methods are looked up on ``info``
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Classified:
    kind: TypeClass
    info: TypeInfo | None = None
    elem: Type | None = None
    items: tuple[Type, ...] = ()


_CONTAINERS = frozenset({
    "builtins.list", "builtins.dict", "builtins.set", "builtins.frozenset", "collections.deque",
    "collections.OrderedDict", "collections.defaultdict", "typing.Sequence", "typing.MutableSequence",
    "typing.Iterable", "typing.Iterator", "typing.Mapping", "typing.MutableMapping", "typing.Collection",
    "typing.Generator", "typing.AbstractSet", "typing.ValuesView", "typing.KeysView", "typing.ItemsView",
})


def classify(t: Type | None) -> Classified:
    """What a declared type says a value holds."""
    p = get_proper_type(t) if t is not None else None
    if p is None or isinstance(p, AnyType):
        return Classified(TypeClass.UNKNOWN)
    if isinstance(p, (NoneType, CallableType)):
        return Classified(TypeClass.PLAIN)
    if isinstance(p, UnionType):
        items = [i for i in p.items if not isinstance(get_proper_type(i), NoneType)]
        return classify(items[0]) if len(items) == 1 else Classified(TypeClass.UNKNOWN)
    if isinstance(p, TupleType):
        return Classified(TypeClass.TUPLE, items=tuple(p.items))
    if not isinstance(p, Instance):
        return Classified(TypeClass.UNKNOWN)
    return _classify_instance(p)


def _classify_instance(p: Instance) -> Classified:
    info = p.type
    for base, kind in ((TENSOR, TypeClass.TENSOR), (MODULE, TypeClass.MODULE), (OPTIMIZER, TypeClass.OPTIMIZER),
                       (GRAPH, TypeClass.GRAPH), (GRADS, TypeClass.GRADS)):
        if info.has_base(base):
            return Classified(kind, info)
    if info.fullname == "builtins.tuple" and p.args:
        return Classified(TypeClass.CONTAINER, info, elem=p.args[0])
    iterable = any(info.has_base(c) for c in ("typing.Iterable", "typing.Mapping"))
    if info.fullname in _CONTAINERS or (p.args and iterable):
        return Classified(TypeClass.CONTAINER, info, elem=p.args[-1] if p.args else None)
    if info.fullname.startswith(("builtins.", "numpy.", "owngrad.")):
        return Classified(TypeClass.PLAIN, info)
    return Classified(TypeClass.OBJECT, info)


def is_mut(t: Type | None) -> bool:
    """``Tensor[Mut]``."""
    p = get_proper_type(t) if t is not None else None
    if isinstance(p, UnionType):
        return any(is_mut(i) for i in p.items)
    return isinstance(p, Instance) and p.type.has_base(TENSOR) and bool(p.args) and \
        isinstance(mode := get_proper_type(p.args[0]), Instance) and mode.type.fullname == MUT


def holds_tensors(t: Type | None) -> bool:
    """Whether a value of declared type ``t`` may hold a tensor, module or optimizer (unknown: yes)."""
    c = classify(t)
    if c.kind is TypeClass.PLAIN:
        return False
    if c.kind is TypeClass.CONTAINER:
        return holds_tensors(c.elem)
    if c.kind is TypeClass.TUPLE:
        return any(holds_tensors(i) for i in c.items)
    return True


def func_of(node: object) -> FuncDef | None:
    if isinstance(node, Decorator):
        node = node.func
    if isinstance(node, OverloadedFuncDef):
        node = node.impl.func if isinstance(node.impl, Decorator) else node.impl
    return node if isinstance(node, FuncDef) else None


def method_class(fd: FuncDef) -> TypeInfo | None:
    """The class a method is defined in (None for a plain function)."""
    info = fd.info
    return None if info is None or info is FUNC_NO_INFO else info


def has_body(fd: FuncDef) -> bool:
    """A function whose body the check can summarise (not a stub, a Protocol member or ``...``)."""
    cls = method_class(fd)
    return bool(fd.body.body) and not fd.is_trivial_body and not getattr(fd, "is_stub", False) \
        and not (cls is not None and cls.is_protocol) and not fd.fullname.startswith("owngrad.")


def writers_of(tensor: TypeInfo) -> frozenset[str]:
    """The in-place writers: every method of ``Tensor`` whose ``self`` is declared ``Tensor[Mut]`` (for an
    overload, its first arm)."""
    out = set()
    for name, sym in tensor.names.items():
        node = sym.node
        if isinstance(node, OverloadedFuncDef) and node.items:
            node = node.items[0]
        fd = func_of(node)
        sig = get_proper_type(fd.type) if fd is not None else None
        if isinstance(sig, CallableType) and sig.arg_types:
            self_t = get_proper_type(sig.arg_types[0])
            if isinstance(self_t, Instance) and self_t.type.fullname == TENSOR and self_t.args and \
                    isinstance(mode := get_proper_type(self_t.args[0]), Instance) and mode.type.fullname == MUT:
                out.add(name)
    return frozenset(out)


#: tensor methods whose result carries nothing (a number, an array, a constant mask)
PLAIN_METHODS = frozenset({"item", "numpy", "tolist", "any", "all", "borrow", "argmax", "argmin", "sign",
                           "state_dict", "to_dot", "pending", "extra_repr", "clip_norm_", "keys", "__len__",
                           "__bool__", "__float__", "__int__", "__format__", "__iter__"})
#: methods whose result shares the receiver's storage, its leading axis scrambled
VIEW_METHODS = frozenset({"reshape", "flatten", "transpose", "permute", "squeeze", "unsqueeze", "expand", "T",
                          "mT"})
#: methods that return their receiver (or the same storage, same axes)
SAME_METHODS = frozenset({"astype", "to", "train", "eval", "__pos__", "contiguous"})
#: recorded ops that save nothing of their inputs (their gradient needs only shapes)
NOSAVE_METHODS = frozenset({"sum", "mean", "copy", "cumsum", "flip", "__add__", "__radd__", "__sub__", "__rsub__",
                            "__neg__", "tril", "triu"})
#: recorded ops that save their own output, not their inputs
OUTPUT_SAVERS = frozenset({"exp", "tanh", "sigmoid", "sqrt", "softmax", "expm1"})
#: module methods that list the module's parts (their elements share its storage)
PART_METHODS = frozenset({"parameters", "children", "modules", "buffers", "values"})
PAIR_METHODS = frozenset({"named_parameters", "named_children", "named_modules", "named_buffers", "items"})
#: owngrad functions that save nothing of their tensor arguments
NOSAVE_FUNCS = frozenset({"stack", "concatenate", "where"})
#: Graph methods that make constants (no gradient)
CONST_FACTORIES = frozenset({"constant", "zeros", "ones", "full", "arange", "eye", "zeros_like", "ones_like",
                             "randn", "rand", "full_like", "empty"})
#: builtins that return nothing tracked
PLAIN_FUNCS = frozenset({"float", "int", "bool", "str", "len", "print", "repr", "isinstance", "range", "round",
                         "format", "id", "type", "hash", "callable", "hasattr", "getattr", "abs", "max", "min",
                         "issubclass", "setattr", "open", "input", "divmod", "pow", "any", "all", "vars"})
#: builtins that return (an iterator over) their argument's elements
CONTAINER_FUNCS = frozenset({"list", "tuple", "dict", "set", "frozenset", "iter", "sorted", "reversed"})
#: built-in modules by what their forward saves
WEIGHTED_MODULES = frozenset({"Linear", "Conv2d", "LayerNorm", "BatchNorm1d"})
PASS_MODULES = frozenset({"ReLU", "Tanh", "Sigmoid", "Dropout", "Flatten", "Embedding"})
PARAMLESS_MODULES = frozenset({"ReLU", "Tanh", "Sigmoid", "Dropout", "Flatten", "MaxPool2d"})
PLAIN_ATTRS = frozenset({"shape", "ndim", "size", "dtype", "device", "name", "requires_grad", "is_leaf", "graph",
                         "training", "rng"})
