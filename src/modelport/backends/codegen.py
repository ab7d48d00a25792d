"""Generate readable, standalone PyTorch source (`model.py`) for a converted Caffe net.

The generated file depends only on torch (plus numpy when the net has SSD's PriorBox or
DetectionOutput, whose modelport classes compute with numpy): `class Net(torch.nn.Module)` with
one submodule per Caffe layer (named as in the live CaffeNet, so `model.safetensors` written
from the live module's state_dict loads into it unchanged), `forward_blobs` with one line per
layer over a dict of Caffe blobs, `forward` (the single output, or a dict of outputs), and
`load(weights=None)` reading `model.safetensors` beside the file with a tiny built-in
safetensors reader.

Design: a registry in this module maps each live module class (CaffeConvolution, CaffePooling,
...) to an *emitter*. An emitter reads the converted module's attributes (and, where simpler,
the Caffe layer parameters) and returns the constructor expression for the generated file plus
the names of the helper snippets it needs. Caffe semantics that PyTorch lacks (Caffe's pooling
window rule and AVE divisor, LRN, BatchNorm's stored sums, ...) are written once per file as
small helper functions/classes in plain torch. We keep the registry here rather than adding a
`codegen()` method to CaffeModule so that the layer families stay free of source-text concerns
and this file is the one place that knows what the generated code looks like; user code adds
its own types with `@register_emitter(TheirModule)`. A module type without an emitter is a
clear `UnsupportedLayerError` naming every such layer and its type.
"""

from __future__ import annotations

import builtins
import dis
import inspect
import keyword
import textwrap
import types
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from modelport.backends.codegen_base import (  # noqa: F401  (call, register_emitter: re-exported)
    _EMITTERS,
    _HELPERS,
    Emitted,
    Emitter,
    call,
    lit,
    register_emitter,
    register_helper,
)
from modelport.errors import ModelportError, UnsupportedLayerError
from modelport.ir import Layer

if TYPE_CHECKING:
    from modelport.backends.torch_module import CaffeNet


class CodegenUnsupportedError(UnsupportedLayerError):
    """Layers whose converted modules model.py cannot express; lists all of them at once."""

    def __init__(self, problems: Sequence[tuple[str, str, str]], source: str = "the net") -> None:
        super().__init__(problems, source)
        listed = "; ".join(f"layer '{n}' (type {t}): {why}" for n, t, why in self.problems)
        count = len(self.problems)
        self.args = (
            f"{count} layer{'s' if count != 1 else ''} in {source} cannot be written to model.py: "
            f"{listed}. Fix: register a source emitter with "
            "@modelport.backends.codegen.register_emitter(<module class>), or keep the layer's "
            "module free of non-literal attributes and non-torch globals (the generic emitter "
            "then copies its class)",)

    def __str__(self) -> str:
        return str(self.args[0])


def emitter_for(module: nn.Module) -> Emitter | None:
    """The hand-written emitter registered for this module's class (exact class), or None."""
    _ensure_emitters()
    return _EMITTERS.get(type(module))


def supported_module_types() -> list[type]:
    """Every module class that has a hand-written source emitter."""
    _ensure_emitters()
    return list(_EMITTERS)


def shape_of(module: nn.Module, name: str) -> tuple[int, ...] | None:
    """The shape of parameter/buffer `name` of `module`, or None when it is None/absent."""
    t = getattr(module, name, None)
    return None if t is None else tuple(int(d) for d in t.shape)


def unsupported_for_codegen(module: CaffeNet) -> list[tuple[str, str, str]]:
    """(layer, type, reason) for every layer whose module type has no source emitter."""
    _MERGED.clear()
    _GLOBAL_ATTRS.clear()
    problems = []
    for layer, key in module.run_order:
        sub = module._modules[key]
        assert sub is not None
        try:
            _merge_parts(sub)
        except CannotEmitError as exc:
            problems.append((layer.name, layer.type,
                             f"model.py cannot express module {type(sub).__name__} ({exc})"))
    if problems:
        return problems
    for layer, key in module.run_order:
        sub = module._modules[key]
        assert sub is not None
        try:
            emit_module(sub, layer)
        except CannotEmitError as exc:
            problems.append((layer.name, layer.type,
                             f"model.py cannot express module {type(sub).__name__} ({exc})"))
    return problems


def doc_text(text: str) -> str:
    """User text (a net, blob or file name) for a docstring or a `#` comment of generated
    source: printable characters as they are, a backslash, a double quote and every
    non-printable character (newline, carriage return, NUL, U+2028, ...) as a visible escape.
    Such text can neither end a triple-quoted string nor a comment line, so it never runs;
    literals are written with `repr` (`lit`), never with this."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1].replace("\\", "\\\\"))
    return "".join(out)


def _ident(key: str) -> bool:
    """Whether `key` can be written as a plain name in the generated class body: an identifier,
    not a keyword, and not `__private` (which Python would mangle to `_Net__private`)."""
    mangled = key.startswith("__") and not key.endswith("__")
    return key.isidentifier() and not keyword.iskeyword(key) and not mangled


# Names the generated forward_blobs / forward read: an input blob named like one of these is
# taken through *args / **kwargs instead of as a parameter (which would shadow it).
_BODY_NAMES = frozenset({"self", "b", "torch", "nn", "F", "len", "getattr", "name"})


def _self_ref(key: str) -> str:
    return f"self.{key}" if _ident(key) else f"getattr(self, {key!r})"


def _blob(name: str) -> str:
    return f"b[{name!r}]"


def _helpers_in_order(names: Sequence[str]) -> list[str]:
    ordered: list[str] = []

    def visit(n: str) -> None:
        if n in ordered:
            return
        if n not in _HELPERS:
            raise KeyError(f"codegen helper '{n}' is not registered")
        for dep in _HELPERS[n][1]:
            visit(dep)
        ordered.append(n)

    for n in names:
        visit(n)
    return ordered


def generate_source(module: CaffeNet, source_name: str = "the net",
                    version: str | None = None, weights_sha256: str | None = None) -> str:
    """The text of `model.py` for the converted `module` (see the module docstring). With
    `weights_sha256` (the sha256 of the model.safetensors written beside it), `load()` refuses
    a model.safetensors, or a conversion.json recording one, that is not that file: a folder
    mixing two conversions, or an incomplete file."""
    from modelport import __version__

    _ensure_emitters()
    problems = unsupported_for_codegen(module)
    if problems:
        raise CodegenUnsupportedError(problems, source_name)
    net = module.net
    inits: list[str] = []
    lines: list[str] = []
    helper_names: list[str] = []
    for layer, key in module.run_order:
        sub = module._modules[key]
        assert sub is not None
        emitted = emit_module(sub, layer)
        helper_names.extend(emitted.helpers)
        if _ident(key):
            inits.append(f"self.{key} = {emitted.expr}")
        else:
            inits.append(f"self.add_module({key!r}, {emitted.expr})")
        args = ", ".join(_blob(b) for b in layer.bottoms)
        tops = ", ".join(_blob(t) for t in layer.tops)
        assign = f"{tops} = " if tops else ""
        lines.append(f"{assign}{_self_ref(key)}({args})  # {doc_text(layer.type)}")

    inputs = list(module.input_names)
    outputs = list(module.output_names)
    shapes = {n: list(module.blob_shapes[n]) for n in inputs}
    plain = all(_ident(n) and n not in _BODY_NAMES for n in inputs)
    if plain:
        signature = ", ".join(f"{n}: torch.Tensor" for n in inputs)
        bind = "b = {" + ", ".join(f"{n!r}: {n}" for n in inputs) + "}"
        fwd_sig = signature
        fwd_call = ", ".join(inputs)
    else:
        signature = "*args: torch.Tensor, **kwargs: torch.Tensor"
        bind = "b = _bind_inputs(self.input_names, args, kwargs)"
        fwd_sig = "*args: torch.Tensor, **kwargs: torch.Tensor"
        fwd_call = "*args, **kwargs"
        helper_names.append("_bind_inputs")
    helper_names.append("_read_safetensors")
    if weights_sha256 is not None:
        helper_names.append("_check_folder")

    out: list[str] = []
    version = version or __version__
    ordered = _helpers_in_order(helper_names)
    needs = "torch and numpy" if any(
        _HELPERS[n][0].startswith("import numpy") for n in ordered) else "only torch"
    out.append(f'"""{doc_text(net.name or "net")}: PyTorch model converted from Caffe by '
               f'modelport {doc_text(version)}.\n\n'
               f"Source: {doc_text(source_name)}. Standalone: needs {needs}. `load()` builds "
               "`Net` and "
               "reads\nmodel.safetensors beside this file. Caffe semantics PyTorch lacks are the "
               'helpers below.\n"""')
    out.append("")
    out.append("from __future__ import annotations\n\nimport json\nimport math\nimport os\n\n"
               "import torch\nimport torch.nn.functional as F\nfrom torch import nn")
    for name in ordered:
        out.append("\n")
        out.append(_HELPERS[name][0])
    out.append("\n")
    doc_in = ", ".join(f"{doc_text(n)} {tuple(shapes[n])}" for n in inputs) or "none"
    doc_out = ", ".join(doc_text(n) for n in outputs)
    body = [
        "class Net(nn.Module):",
        f'    """Caffe net {doc_text(repr(net.name))}. Inputs (Caffe order): {doc_in}. '
        f"Outputs: {doc_out}.",
        "",
        "    Call with the inputs positionally or by blob name; returns the output blob, or a "
        "dict of",
        '    them when there are several. forward_blobs returns every blob by its Caffe name."""',
        "",
        f"    input_names = {lit(tuple(inputs))}",
        f"    output_names = {lit(tuple(outputs))}",
        f"    input_shapes = {lit({n: tuple(s) for n, s in shapes.items()})}",
        "",
        "    def __init__(self) -> None:",
        "        super().__init__()",
    ]
    body += [f"        {line}" for line in inits]
    body += [
        "",
        f"    def forward_blobs(self, {signature}) -> dict[str, torch.Tensor]:",
        f"        {bind}",
    ]
    body += [f"        {line}" for line in lines]
    body += [
        "        return b",
        "",
        f"    def forward(self, {fwd_sig}) -> torch.Tensor | dict[str, torch.Tensor]:",
        f"        b = self.forward_blobs({fwd_call})",
        "        if len(self.output_names) == 1:",
        "            return b[self.output_names[0]]",
        "        return {name: b[name] for name in self.output_names}",
        "",
        "",
        "def load(weights: str | None = None) -> Net:",
        '    """Build Net and load its weights (default: model.safetensors beside this file)."""',
        "    path = weights or os.path.join(os.path.dirname(os.path.abspath(__file__)),",
        '                                   "model.safetensors")',
        "    net = Net()",
    ]
    if weights_sha256 is not None:
        body += ["    if weights is None:",
                 f"        _check_folder(path, {lit(weights_sha256)})"]
    body += [
        "    net.load_state_dict(_read_safetensors(path), strict=True)",
        f"    return net.train({lit(module.training)})",
    ]
    out.append("\n".join(body))
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------
# The generic emitter: a layer module whose methods use only torch (and self-contained module
# globals: small functions, numeric constants, Caffe enum values) is written as a copy of its
# own class, with an explicit __init__ rebuilt from the instance's attributes, parameter and
# buffer shapes, and submodules. Hand-written emitters (codegen_layers.py) take precedence.

_SAFE_GLOBALS = frozenset({"torch", "F", "nn", "math", "Sequence", "Shape"}) | frozenset(
    dir(builtins))
_MODULE_INTERNALS = frozenset(nn.Module().__dict__) | {"caffe_blob_names"}
_SKIP_METHODS = frozenset({"__init__", "output_shapes", "caffe_blobs", "extra_repr"})


class CannotEmitError(Exception):
    """The generic emitter cannot express this module (reason in the message)."""


# Per global name, the attributes read off it in the copied code (`caffe_pb2.X.Y`: {"X"}).
_GLOBAL_ATTRS: dict[str, set[str]] = {}


def _global_names(fn: Callable) -> set[str]:
    """The globals `fn` reads; the attributes it reads off each go to _GLOBAL_ATTRS."""
    names = set()
    last: str | None = None
    for ins in dis.get_instructions(fn):
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            names.add(ins.argval)
            last = ins.argval
            continue
        if last is not None and ins.opname in ("LOAD_ATTR", "LOAD_METHOD"):
            _GLOBAL_ATTRS.setdefault(last, set()).add(ins.argval)
        last = None
    return names


def _pb2_namespace(name: str, module: types.ModuleType) -> str:
    """A class standing in for protobuf module `name` with the enum values the copied code
    reads off it (`caffe_pb2.HingeLossParameter.L1`, `caffe_pb2.TEST`)."""
    body = []
    for attr in sorted(_GLOBAL_ATTRS.get(name, ())):
        value = getattr(module, attr, None)
        if isinstance(value, int):
            body.append(f"    {attr} = {value}")
        elif value is not None:
            body.append(textwrap.indent(_enum_namespace(attr, value), "    "))
        else:
            raise CannotEmitError(f"uses '{name}.{attr}'")
    if not body:
        raise CannotEmitError(f"uses module '{name}'")
    return f'class {name}:\n    """The Caffe enums used below."""\n\n' + "\n".join(body)


def _enum_namespace(name: str, obj: object) -> str:
    values: dict[str, int] = {}
    descriptor = getattr(obj, "DESCRIPTOR", None)
    if descriptor is not None and hasattr(descriptor, "enum_values_by_name"):
        values = {k: v.number for k, v in descriptor.enum_values_by_name.items()}
    elif descriptor is not None and hasattr(descriptor, "values_by_name"):
        values = {k: v.number for k, v in descriptor.values_by_name.items()}
    if not values:
        raise CannotEmitError(f"uses global '{name}' ({type(obj).__name__})")
    body = "\n".join(f"    {k} = {v}" for k, v in values.items())
    return f'class {name}:\n    """Caffe enum values."""\n\n{body}'


_LAYER_ERROR = (
    "class LayerError(ValueError):\n"
    '    """A layer cannot compute on this input (the message names the layer)."""\n\n'
    "    def __init__(self, name, type_, what, fix=None):\n"
    "        fix = f\". Fix: {fix}\" if fix else \"\"\n"
    "        super().__init__(f\"layer '{name}' (type {type_}): {what}{fix}\")"
)


def _resolve_globals(names: set[str], globs: dict, needs: list[str], seen: set[str]) -> None:
    """Register helpers for the globals a copied method uses; CannotEmitError if one is unknown."""
    for name in sorted(names - _SAFE_GLOBALS):
        if name in seen:
            continue
        seen.add(name)
        if name not in globs:
            raise CannotEmitError(f"uses unknown global '{name}'")
        obj = globs[name]
        if isinstance(obj, types.ModuleType) and obj.__name__ == "numpy":
            # Only layers that compute constants with numpy (SSD's PriorBox, DetectionOutput)
            # make the generated file import numpy; everything else needs torch alone.
            register_helper(name, f"import numpy as {name}  # used by the helpers below")
        elif name == "LayerError":
            register_helper("LayerError", _LAYER_ERROR)
        elif isinstance(obj, types.ModuleType) and obj.__name__.endswith("_pb2"):
            register_helper(name, _pb2_namespace(name, obj))
        elif (inspect.isclass(obj) and issubclass(obj, ModelportError)
              and obj.__module__ == "modelport.errors"):
            # a plain-message error (ConfigError(...)): ValueError with the same message
            doc = (inspect.getdoc(obj) or "A modelport error.").splitlines()[0]
            register_helper(name, f'class {name}(ValueError):\n    """{doc}"""')
        elif inspect.isfunction(obj):
            if not obj.__module__.startswith("modelport."):
                raise CannotEmitError(f"uses function '{name}' from {obj.__module__}")
            _resolve_globals(_global_names(obj), obj.__globals__, needs, seen)
            register_helper(name, inspect.getsource(obj))
        elif (inspect.isclass(obj) and issubclass(obj, torch.autograd.Function)
              and obj.__module__.startswith("modelport.")):
            # an explicit forward/backward (e.g. ContrastiveLoss's): the class copied whole
            for member in vars(obj).values():
                fn = member.__func__ if isinstance(member, staticmethod | classmethod) else member
                if inspect.isfunction(fn):
                    _resolve_globals(_global_names(fn), fn.__globals__, needs, seen)
            register_helper(name, inspect.getsource(obj))
        elif isinstance(obj, bool | int | float | str):
            register_helper(name, f"{name} = {lit(obj)}")
        else:
            register_helper(name, _enum_namespace(name, obj))
        needs.append(name)


# Per class, the union of the parts of every instance in the net being generated (so one
# generated class serves e.g. an InnerProduct with a bias and one without).
_MERGED: dict[type, tuple[dict, dict, dict, dict]] = {}


def _own_parts(m: nn.Module) -> tuple[dict, dict, dict, dict]:
    """(plain attributes, parameter shapes, buffer shapes, submodules) of `m` itself."""
    attrs = {}
    for k, v in vars(m).items():
        if k in _MODULE_INTERNALS:
            continue
        try:
            lit(v)
        except TypeError:
            raise CannotEmitError(f"attribute '{k}' holds a {type(v).__name__}") from None
        attrs[k] = v
    params = {k: (None if v is None else tuple(int(d) for d in v.shape))
              for k, v in m._parameters.items()}
    buffers = {k: (None if v is None else _buffer_value(k, v, k in m._non_persistent_buffers_set))
               for k, v in m._buffers.items()}
    return attrs, params, buffers, dict(m._modules)


_MAX_WRITTEN_VALUES = 1 << 16


def _buffer_value(name: str, t: torch.Tensor, written: bool) -> object:
    """A buffer's constructor argument: its shape (model.safetensors holds its values), or,
    for a non-persistent buffer (a constant the state dict lacks, e.g. InfogainLoss's H from
    infogain_loss_param.source), (dtype name, shape, values) written into model.py."""
    shape = tuple(int(d) for d in t.shape)
    if not written:
        return shape
    if t.numel() > _MAX_WRITTEN_VALUES:
        raise CannotEmitError(f"its constant buffer '{name}' holds {t.numel()} values (more than "
                         f"{_MAX_WRITTEN_VALUES} are not written into model.py)")
    return (str(t.dtype).removeprefix("torch."), shape, t.detach().reshape(-1).tolist())


def portable_form(m: nn.Module) -> nn.Module:
    """The module codegen writes for `m`: `m` itself, or, for a speed rewrite without an emitter
    of its own (modelport.optimize), the standard-op form its `portable()` returns."""
    _ensure_emitters()
    while type(m) not in _EMITTERS and callable(getattr(m, "portable", None)):
        m = m.portable()  # type: ignore[operator]
    return m


def _merge_parts(m: nn.Module) -> None:
    m = portable_form(m)
    if type(m) in _EMITTERS:  # written by its own emitter, not by copying its class
        return
    attrs, params, buffers, subs = _own_parts(m)
    old = _MERGED.get(type(m))
    if old is None:
        _MERGED[type(m)] = (attrs, params, buffers, subs)
    else:
        for mine, theirs in zip((attrs, params, buffers, subs), old):
            for k, v in mine.items():
                theirs.setdefault(k, v)
        # A name that is a parameter/buffer anywhere is one everywhere (None when absent).
        for k in list(old[0]):
            if k in old[1] or k in old[2]:
                del old[0][k]
    for sub in m._modules.values():
        if sub is not None:
            _merge_parts(sub)


def _instance_parts(m: nn.Module) -> tuple[dict, dict, dict, dict]:
    """This instance's values for its class's merged signature: attributes, parameter and
    buffer shapes (None when absent), and submodules."""
    attrs, params, buffers, subs = _own_parts(m)
    merged = _MERGED.get(type(m))
    if merged is not None:
        params = {k: params.get(k) for k in merged[1]}
        attrs = {k: attrs.get(k) for k in merged[0]}
        subs = {k: subs.get(k) for k in merged[3]}
        buffers = {k: buffers.get(k) for k in merged[2]}
    return attrs, params, buffers, subs


def _copied_methods(cls: type, needs: list[str], seen: set[str]) -> list[str]:
    """The source of the methods `cls` itself defines (not inherited ones); the helpers for
    the globals they use are added to `needs`."""
    methods = []
    for attr, member in vars(cls).items():
        fn = member.__func__ if isinstance(member, staticmethod | classmethod) else member
        if attr in _SKIP_METHODS or not inspect.isfunction(fn):
            continue
        inner = inspect.unwrap(fn)  # a decorated method (@torch.no_grad()): its own globals
        _resolve_globals(_global_names(inner), inner.__globals__, needs, seen)
        methods.append(textwrap.dedent(inspect.getsource(fn)))
    return methods


def _class_doc(cls: type) -> str:
    doc = (inspect.getdoc(cls) or f"Caffe layer module {cls.__name__}.").replace('"""', "'''")
    return f'"""{doc}\n"""' if "\n" in doc else f'"""{doc}"""'


def _base_of(cls: type) -> str:
    """The base class a copy of layer class `cls` is written with: nn.Module for a direct
    CaffeModule subclass, else its modelport base class (e.g. LossModule, SoftmaxLoss), copied
    once as a helper of its own after its own bases (its methods only: the generated __init__
    of each layer class sets every attribute)."""
    from modelport.layers.base import CaffeModule

    if len(cls.__bases__) != 1:
        raise CannotEmitError(f"{cls.__name__} has {len(cls.__bases__)} base classes")
    base = cls.__bases__[0]
    if base is CaffeModule:
        return "nn.Module"
    if not issubclass(base, CaffeModule) or not base.__module__.startswith("modelport."):
        raise CannotEmitError(f"{cls.__name__} derives from {base.__name__} ({base.__module__}), "
                         "not from a modelport layer class")
    needs: list[str] = []
    parent = _base_of(base)
    if parent != "nn.Module":
        needs.append(parent)
    methods = _copied_methods(base, needs, set())
    parts = [f"class {base.__name__}({parent}):", textwrap.indent(_class_doc(base), "    ")]
    for m in methods:
        parts += ["", textwrap.indent(m.rstrip(), "    ")]
    register_helper(base.__name__, "\n".join(parts), needs)
    return base.__name__


def _generic_class(cls: type, sample: nn.Module) -> tuple[str, list[str]]:
    """The source of a standalone copy of layer class `cls` (built from instance `sample`)."""
    needs: list[str] = []
    seen: set[str] = set()
    parent = _base_of(cls)
    if parent != "nn.Module":
        needs.append(parent)
    methods = _copied_methods(cls, needs, seen)
    attrs, params, buffers, subs = _instance_parts(sample)
    args = list(attrs) + list(params) + list(buffers) + list(subs)
    init = [f"def __init__(self{''.join(', ' + a for a in args)}):", "    super().__init__()"]
    init += [f"    self.{a} = {a}" for a in attrs]
    init += [f"    self.{a} = nn.Parameter(torch.empty({a})) if {a} is not None else None"
             for a in params]
    for a in buffers:
        if a in sample._non_persistent_buffers_set:  # (dtype, shape, values): see _buffer_value
            init.append(f"    self.register_buffer({a!r}, torch.tensor({a}[2], dtype=getattr("
                        f"torch, {a}[0])).reshape({a}[1]) if {a} is not None else None, "
                        "persistent=False)")
        else:
            init.append(f"    self.register_buffer({a!r}, torch.empty({a}) if {a} is not None "
                        "else None)")
    init += [f"    self.{a} = {a}" for a in subs]
    parts = [f"class {cls.__name__}({parent}):", textwrap.indent(_class_doc(cls), "    "), "",
             textwrap.indent("\n".join(init), "    ")]
    for m in methods:
        parts += ["", textwrap.indent(m.rstrip(), "    ")]
    return "\n".join(parts), needs


def emit_module(m: nn.Module, layer: Layer | None = None) -> Emitted:
    """Constructor expression for any module (or its portable form): its registered emitter,
    nn.ModuleList, or the generic class copy. Raises CannotEmitError when none applies."""
    _ensure_emitters()
    m = portable_form(m)
    emitter = _EMITTERS.get(type(m))
    if emitter is not None:
        return emitter(layer, m)  # type: ignore[arg-type]
    if type(m) is nn.ModuleList:
        inner = [emit_module(s, layer) for s in m]
        return Emitted("nn.ModuleList([" + ", ".join(e.expr for e in inner) + "])",
                       tuple(h for e in inner for h in e.helpers))
    name = type(m).__name__
    source, needs = _generic_class(type(m), m)
    register_helper(name, source, needs)  # the same text for every instance (merged signature)
    attrs, params, buffers, subs = _instance_parts(m)
    kwargs = [f"{k}={lit(v)}" for k, v in attrs.items()]
    kwargs += [f"{k}={lit(v)}" for k, v in params.items()]
    kwargs += [f"{k}={lit(v)}" for k, v in buffers.items()]
    helpers = [name]
    for k, sub in subs.items():
        if sub is None:
            kwargs.append(f"{k}=None")
            continue
        e = emit_module(sub, layer)
        kwargs.append(f"{k}={e.expr}")
        helpers.extend(e.helpers)
    return Emitted(f"{name}({', '.join(kwargs)})", tuple(helpers))


# ---------------------------------------------------------------------------------------------
# Helpers every generated file may use.

register_helper("_read_safetensors", '''
    def _read_safetensors(path: str) -> dict[str, torch.Tensor]:
        """Read a .safetensors file (8-byte header length, JSON header, raw little-endian data)."""
        dtypes = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16,
                  "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32,
                  "U8": torch.uint8, "BOOL": torch.bool}
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(size))
            data = bytearray(fh.read())
        tensors = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            dtype = dtypes[info["dtype"]]
            start, end = info["data_offsets"]
            count = (end - start) // torch.empty((), dtype=dtype).element_size()
            flat = (torch.frombuffer(data, dtype=dtype, count=count, offset=start) if count
                    else torch.empty(0, dtype=dtype))
            tensors[name] = flat.reshape(info["shape"])
        return tensors
''')

register_helper("_check_folder", '''
    def _check_folder(weights: str, expected: str) -> None:
        """The folder must hold one whole conversion: model.safetensors (sha256) is the file
        written with this model.py, and conversion.json, when present, records that file."""
        import hashlib

        folder = os.path.dirname(weights) or "."
        digest = hashlib.sha256()
        with open(weights, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
        problem = None
        if digest.hexdigest() != expected:
            problem = "model.safetensors is not the file written with this model.py"
        else:
            try:
                with open(os.path.join(folder, "conversion.json"), encoding="utf-8") as fh:
                    recorded = json.load(fh).get("sha256", {}).get("model.safetensors")
            except (OSError, ValueError, AttributeError, RecursionError):
                recorded = None
            if recorded not in (None, expected):
                problem = "conversion.json belongs to another conversion"
        if problem:
            raise RuntimeError(f"{folder}: {problem} (a folder mixing two conversions, or an "
                               "incomplete file). Fix: convert into this folder again, or pass "
                               "the weights explicitly: load(path)")
''')

register_helper("_bind_inputs", '''
    def _bind_inputs(names: tuple[str, ...], args: tuple, kwargs: dict) -> dict[str, torch.Tensor]:
        """Inputs given positionally (Caffe's input order) or by blob name."""
        if len(args) > len(names):
            raise TypeError(f"the net takes {len(names)} inputs, got {len(args)}")
        blobs = dict(zip(names, args))
        for name, value in kwargs.items():
            if name not in names or name in blobs:
                raise TypeError(f"unexpected or repeated input {name!r}; inputs are {names}")
            blobs[name] = value
        missing = [n for n in names if n not in blobs]
        if missing:
            raise TypeError(f"missing inputs: {missing}")
        return blobs
''')


def _ensure_emitters() -> None:
    import modelport.backends.codegen_layers  # noqa: F401  (registers the built-in emitters)
