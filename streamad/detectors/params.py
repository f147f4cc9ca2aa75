"""Detector parameters checked against the constructor's signature, without building.

A detector's parameters are the keyword arguments of its constructor, typed, with
their constraints in the annotation (``Annotated[float, Field(gt=0, lt=1)]``). A
pydantic model made from that signature (once per detector class) checks a dict of
parameters the way the constructor would, and names the key of every problem, so
settings can be validated without building a network or importing torch.

>>> from typing import Annotated
>>> from pydantic import Field
>>> def make(alpha: Annotated[float, Field(gt=0, lt=1)] = 0.1, seed: int = 0) -> None: ...
>>> check_params(make, {"alpha": "0.2"}, "demo")
{'alpha': 0.2}
>>> check_params(make, {"alpah": 0.2, "seed": 1.5}, "demo")
Traceback (most recent call last):
...
streamad.detectors.params.ParamsError: bad parameters for detector 'demo': alpah: unknown parameter; did you mean alpha?; seed: Input should be a valid integer, got a number with a fractional part (got 1.5)
"""  # noqa: E501 (a doctest's exception message is one line)

from __future__ import annotations

import difflib
import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic_core import PydanticCustomError


@dataclass(frozen=True)
class ParamIssue:
    """One problem with one parameter."""

    key: str
    message: str
    input: Any
    type: str

    def describe(self) -> str:
        shown = self.type != "unknown_parameter" and not isinstance(self.input, (dict, list))
        return f"{self.key}: {self.message}" + (f" (got {self.input!r})" if shown else "")


class ParamsError(ValueError):
    """Parameters a detector does not take, or values it does not accept."""

    def __init__(self, detector: str, issues: list[ParamIssue]) -> None:
        self.detector = detector
        self.issues = issues
        super().__init__(f"bad parameters for detector {detector!r}: " + "; ".join(i.describe() for i in issues))

    def validation_error(self, *loc: str) -> ValidationError:
        """The same problems as a pydantic error located under ``loc`` (for settings:
        ``detector.params.alpha: ...``)."""
        line_errors: list[Any] = [
            {"type": PydanticCustomError(i.type, i.message), "loc": (*loc, i.key), "input": i.input} for i in self.issues
        ]
        return ValidationError.from_exception_data(f"{self.detector} parameters", line_errors)


@dataclass(frozen=True)
class _Signature:
    model: type[BaseModel]
    names: frozenset[str]
    open: bool  # takes **kwargs: other keys go through unchecked


@functools.cache
def _signature(factory: Callable[..., Any]) -> _Signature:
    sig = inspect.signature(factory)
    target = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception:  # a partial, a builtin: parameters stay untyped
        hints = {}
    fields: dict[str, Any] = {}
    is_open = False
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            is_open = True
        elif p.kind is not p.VAR_POSITIONAL:
            fields[p.name] = (hints.get(p.name, Any), ... if p.default is p.empty else p.default)
    config = ConfigDict(extra="allow" if is_open else "forbid", arbitrary_types_allowed=True, protected_namespaces=())
    model = create_model(f"{getattr(factory, '__name__', 'Detector')}Params", __config__=config, **fields)
    return _Signature(model, frozenset(fields), is_open)


def param_names(factory: Callable[..., Any]) -> frozenset[str]:
    """The named parameters of ``factory`` (a detector class or function)."""
    return _signature(factory).names


def takes(factory: Callable[..., Any], name: str) -> bool:
    """Whether ``factory`` accepts a keyword ``name``."""
    sig = _signature(factory)
    return sig.open or name in sig.names


def check_params(factory: Callable[..., Any], params: Mapping[str, Any], detector: str) -> dict[str, Any]:
    """The given parameters, checked against ``factory``'s signature and converted to
    their types (``"0.2"`` to 0.2); defaults are left out. Raises ``ParamsError``."""
    sig = _signature(factory)
    issues: list[ParamIssue] = []
    known = {k: v for k, v in params.items() if sig.open or k in sig.names}
    for key in params:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(sig.names), n=1, cutoff=0.7)
            hint = f"did you mean {close[0]}?" if close else f"{detector} takes {', '.join(sorted(sig.names)) or 'none'}"
            issues.append(ParamIssue(str(key), f"unknown parameter; {hint}", dict(params), "unknown_parameter"))
    checked: BaseModel | None = None
    try:
        checked = sig.model.model_validate(known)
    except ValidationError as e:
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "params"
            issues.append(ParamIssue(key, err["msg"], err.get("input"), err["type"]))
    if issues or checked is None:
        raise ParamsError(detector, issues)
    out = {k: getattr(checked, k) for k in known if k in sig.names}
    out.update({k: v for k, v in (checked.model_extra or {}).items()})
    return out
