"""``laminar_polars/_native.pyi`` held to the compiled module it describes.

mypy reads the stub, never the extension, so a stub drifting from
native/_native.pyx would pass code that fails at run time. These tests parse the
stub and compare it with the built module: the same public names, the same
arguments and defaults, the constants' values, and values of the declared types.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from laminar_polars import _native

STUB = Path(_native.__file__).with_name("_native.pyi")  # beside the extension, as shipped
PYX = Path(__file__).resolve().parents[2] / "native" / "_native.pyx"
TREE = ast.parse(STUB.read_text(encoding="utf-8"))

# What Cython adds to every extension type (pickling support, the C method table).
CYTHON_MEMBERS = {"__doc__", "__new__", "__reduce__", "__setstate__", "__reduce_cython__",
                  "__setstate_cython__", "__pyx_vtable__"}

CLASSES = {node.name: node for node in TREE.body if isinstance(node, ast.ClassDef)}
FUNCTIONS = {node.name: node for node in TREE.body if isinstance(node, ast.FunctionDef)}
CONSTANTS = {node.target.id: node for node in TREE.body
             if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}


def _members(cls: ast.ClassDef) -> dict[str, ast.FunctionDef]:
    return {node.name: node for node in cls.body if isinstance(node, ast.FunctionDef)}


def _is_property(function: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "property" for d in function.decorator_list)


def _stub_parameters(function: ast.FunctionDef) -> list[tuple[str, object]]:
    """``(name, default)`` of every parameter, ``*args``/``**kwargs`` spelled so."""
    arguments = function.args
    positional = arguments.posonlyargs + arguments.args
    defaults: list[object] = [inspect.Parameter.empty] * (
        len(positional) - len(arguments.defaults))
    defaults += [ast.literal_eval(d) for d in arguments.defaults]
    result = [(a.arg, d) for a, d in zip(positional, defaults, strict=True)]
    if arguments.vararg is not None:
        result.append(("*" + arguments.vararg.arg, inspect.Parameter.empty))
    result += [(a.arg, inspect.Parameter.empty if d is None else ast.literal_eval(d))
               for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True)]
    if arguments.kwarg is not None:
        result.append(("**" + arguments.kwarg.arg, inspect.Parameter.empty))
    return result


def _runtime_parameters(function: Any) -> list[tuple[str, object]]:
    prefix = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    return [(prefix.get(p.kind, "") + p.name, p.default)
            for p in inspect.signature(function).parameters.values()]


def _public_names_of_module() -> set[str]:
    """Public names the module defines (its constants, functions and classes), not
    what it imports (numpy, sys, deque)."""
    return {name for name, value in vars(_native).items()
            if not name.startswith("_") and not inspect.ismodule(value)
            and getattr(value, "__module__", _native.__name__) == _native.__name__}


def test_stub_has_exactly_the_module_public_names() -> None:
    stub = set(CLASSES) | set(FUNCTIONS) | set(CONSTANTS)
    assert stub == _public_names_of_module()


@pytest.mark.parametrize("name", sorted(CONSTANTS))
def test_constant_has_the_stub_value(name: str) -> None:
    value = CONSTANTS[name].value
    assert value is not None, f"{name}: give the value in the stub (Final = ...)"
    expected = ast.literal_eval(value)
    assert getattr(_native, name) == expected
    assert type(getattr(_native, name)) is type(expected)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_class_members_match(name: str) -> None:
    cls = getattr(_native, name)
    stub = _members(CLASSES[name])
    runtime = set(vars(cls)) - CYTHON_MEMBERS
    assert set(stub) - {"__init__"} == runtime
    for member, function in stub.items():
        if member == "__init__":
            continue
        # readonly attributes and @property are getset descriptors; methods are not
        assert _is_property(function) == inspect.isdatadescriptor(vars(cls)[member]), member


SIGNED = [(name, None) for name in sorted(FUNCTIONS)] + [
    (name, member) for name, cls in sorted(CLASSES.items())
    for member, function in _members(cls).items()
    if member != "__init__" and not _is_property(function)
]


@pytest.mark.parametrize(("owner", "member"), SIGNED)
def test_signature_matches(owner: str, member: str | None) -> None:
    if member is None:
        stub, runtime = FUNCTIONS[owner], getattr(_native, owner)
    else:
        stub, runtime = _members(CLASSES[owner])[member], getattr(getattr(_native, owner), member)
    assert _stub_parameters(stub) == _runtime_parameters(runtime)


def _cinit_parameters(pyx: str, name: str) -> list[tuple[str, object]] | None:
    """``(name, default)`` of ``cdef class name``'s ``__cinit__`` in the .pyx (the
    compiled ``__cinit__`` has no introspectable signature); None without one."""
    body = re.search(rf"^cdef class {name}\b.*?(?=^\S)", pyx + "\n.", re.S | re.M)
    assert body is not None, name
    cinit = re.search(r"def __cinit__\((.*?)\):", body.group(0), re.S)
    if cinit is None:
        return None
    result: list[tuple[str, object]] = []
    for part in (p.strip() for p in cinit.group(1).split(",")):
        declaration, _, default = part.partition("=")
        param = declaration.split()[-1]  # after the C type, if any: `int64_t capacity`
        result.append((param, ast.literal_eval(default.strip()) if default
                       else inspect.Parameter.empty))
    return result


@pytest.mark.skipif(not PYX.exists(), reason="the .pyx source is not here (an installed wheel)")
@pytest.mark.parametrize("name", sorted(CLASSES))
def test_init_matches_cinit(name: str) -> None:
    cinit = _cinit_parameters(PYX.read_text(encoding="utf-8"), name)
    init = _members(CLASSES[name]).get("__init__")
    if init is None:  # the stub keeps object's __init__: constructed with no arguments
        assert cinit in (None, [("self", inspect.Parameter.empty)])
    else:
        assert _stub_parameters(init) == cinit


# -- values of the declared types -------------------------------------------------------


def _types(annotation: ast.expr, capsule: type) -> tuple[type, ...]:
    """The run-time classes an annotation of the stub admits (generics by origin)."""
    if isinstance(annotation, ast.Constant) and annotation.value is None:
        return (type(None),)
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        return _types(annotation.left, capsule) + _types(annotation.right, capsule)
    if isinstance(annotation, ast.Subscript):
        return _types(annotation.value, capsule)
    text = ast.unparse(annotation)
    special: dict[str, type] = {"Any": object, "CapsuleType": capsule,
                                "npt.NDArray": np.ndarray}
    if text in special:
        return (special[text],)
    found = getattr(_native, text, None) or getattr(builtins, text)
    assert isinstance(found, type), text
    return (found,)


def _check_properties(value: object, capsule: type) -> None:
    for name, function in _members(CLASSES[type(value).__name__]).items():
        if _is_property(function):
            assert function.returns is not None
            assert isinstance(getattr(value, name), _types(function.returns, capsule)), name


def _check_returns(owner: str, member: str, result: object, capsule: type) -> object:
    function = FUNCTIONS[owner] if owner == member else _members(CLASSES[owner])[member]
    assert function.returns is not None
    assert isinstance(result, _types(function.returns, capsule)), f"{owner}.{member}"
    return result


def test_values_have_the_stub_types() -> None:
    bell = _native.Doorbell()
    ring = _native.Ring(["symbol", "qty", "ts"], [0, 3, 7], [True, False, True], 8,
                        watermark_column=2, doorbell=bell)
    capsule = type(ring.schema_capsule())
    check = _check_returns
    producer = _native.Producer(ring)
    check("Producer", "push", producer.push(("a", 1, 10)), capsule)
    check("Producer", "try_push", producer.try_push(("b", None, 20)), capsule)
    staged = check("Producer", "stage_rows", producer.stage_rows([("c", 3, 30)]), capsule)
    assert check("Producer", "stage_rows", producer.stage_rows([]), capsule) is None
    assert isinstance(staged, tuple)
    chunk, event_times = staged
    assert event_times.dtype == np.int64
    check("Ring", "enqueue_batch", ring.enqueue_batch(chunk, len(chunk), event_times), capsule)
    check("Ring", "advance_watermark", ring.advance_watermark(15), capsule)
    check("Ring", "stats", ring.stats(), capsule)
    check("Doorbell", "wait", bell.wait([ring], bell.rung, 0.0), capsule)
    taken = check("Ring", "take", ring.take(), capsule)
    assert isinstance(taken, tuple)
    watermark, segments, consumed = taken
    assert isinstance(consumed, int)
    assert isinstance(watermark, int)
    assert [type(s).__name__ for s in segments] == ["ArrowChunk", "QueuedBatch"]
    for value in (bell, ring, producer, *segments):
        _check_properties(value, capsule)
    arrays = check("ArrowChunk", "__arrow_c_array__", segments[0].__arrow_c_array__(), capsule)
    assert isinstance(arrays, tuple) and all(isinstance(a, capsule) for a in arrays)
    check("Ring", "close", ring.close("done", ValueError("why")), capsule)
    _check_properties(ring, capsule)  # close_reason and close_cause set now
    check("Ring", "closed_error", ring.closed_error(), capsule)
    check("datetime64_micros", "datetime64_micros",
          _native.datetime64_micros(np.datetime64("2024-01-01T00:00:00.5", "ms")), capsule)
