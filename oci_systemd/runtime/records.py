# SPDX-License-Identifier: Apache-2.0
"""Immutable record classes for the spec model, without dataclasses' code generation.

`@dataclass(frozen=True)` compiles six functions per class at import (exec of generated
source): 38 classes cost `create` ~20 ms before it did anything. `@record` gives the same
behaviour that the spec model uses (keyword or positional construction with defaults and
default factories, equality, hashing, repr, frozen attributes) with shared methods built
once. Type checkers see a dataclass through `dataclass_transform`.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs `create` ~3 ms at import: for the type checker only
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")
else:

    def dataclass_transform(**_kwargs: object) -> object:
        return lambda decorated: decorated


_MISSING = object()


class FrozenInstanceError(AttributeError):
    pass


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], Any]) -> Any:
    """A field whose default is made per instance (like dataclasses.field)."""
    return _Factory(default_factory)


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    names: tuple[str, ...] = type(self).__record_fields__
    defaults: dict[str, Any] = type(self).__record_defaults__
    if len(args) > len(names):
        raise TypeError(f"{type(self).__name__}() takes {len(names)} arguments, got {len(args)}")
    values = dict(zip(names, args, strict=False))
    for key, value in kwargs.items():
        if key not in defaults and key not in names:
            raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument {key!r}")
        if key in values:
            raise TypeError(f"{type(self).__name__}() got multiple values for {key!r}")
        values[key] = value
    for name in names:
        if name not in values:
            default = defaults.get(name, _MISSING)
            if default is _MISSING:
                raise TypeError(f"{type(self).__name__}() missing required argument {name!r}")
            values[name] = default.make() if isinstance(default, _Factory) else default
        object.__setattr__(self, name, values[name])


def _values(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, n) for n in type(self).__record_fields__)


def _eq(self: Any, other: object) -> bool:
    if other.__class__ is not self.__class__:
        return NotImplemented  # type: ignore[no-any-return]
    return _values(self) == _values(other)


def _hash(self: Any) -> int:
    return hash(_values(self))


def _repr(self: Any) -> str:
    fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in type(self).__record_fields__)
    return f"{type(self).__name__}({fields})"


def _frozen(self: Any, name: str, value: Any = None) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[T]) -> type[T]:
    """Make `cls` (annotated fields, optional defaults) an immutable record with __slots__."""
    body = dict(cls.__dict__)
    # The class's own annotations (strings, under `from __future__ import annotations`), in order.
    names = tuple(n for n in body.get("__annotations__", {}) if not n.startswith("_"))
    defaults = {n: body[n] for n in names if n in body}
    namespace = {k: v for k, v in body.items() if k not in names and k not in ("__dict__", "__weakref__")}
    namespace.update(
        __slots__=names,
        __record_fields__=names,
        __record_defaults__=defaults,
        __match_args__=names,
        __init__=_init,
        __eq__=_eq,
        __hash__=_hash,
        __repr__=_repr,
        __setattr__=_frozen,
        __delattr__=_frozen,
    )
    new: type[T] = type(cls.__name__, cls.__bases__, namespace)
    return new
