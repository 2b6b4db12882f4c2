"""A griffe extension for the API reference: the ``__init__`` signature of attrs classes.

mxscan's model (``Result``, ``Message``, ``Verdict``, ...) is made of
``@attrs.frozen`` classes, whose ``__init__`` attrs writes at import time;
griffe reads the source statically and so showed them with no signature at all.
This builds the signature attrs would: the annotated attributes in order, a
leading underscore dropped from the parameter name, ``attrs.field(default=...,
factory=..., init=False, kw_only=True, alias=...)`` honoured. Loaded from
mkdocs.yml (``extensions:`` of the python handler).
"""

from __future__ import annotations

from typing import Any

import griffe

#: Decorators that give a class an attrs-generated ``__init__``.
ATTRS_DECORATORS = {
    "attrs.frozen", "attrs.define", "attrs.mutable", "attr.s", "attr.attrs",
    "attr.frozen", "attr.define", "attr.mutable",
}  # fmt: skip
FIELD_CALLS = {"attrs.field", "attr.ib", "attr.attrib", "attr.field"}


def _keywords(call: griffe.ExprCall) -> dict[str, Any]:
    return {arg.name: arg.value for arg in call.arguments if isinstance(arg, griffe.ExprKeyword)}


def _attrs_decorator(cls: griffe.Class) -> griffe.Expr | None:
    for decorator in cls.decorators:
        value = decorator.value
        if isinstance(value, griffe.Expr) and value.canonical_path in ATTRS_DECORATORS:
            return value
    return None


def _parameter(attribute: griffe.Attribute, kw_only: bool) -> griffe.Parameter | None:
    value: Any = attribute.value
    options: dict[str, Any] = {}
    if isinstance(value, griffe.ExprCall) and value.canonical_path in FIELD_CALLS:
        options = _keywords(value)
        value = options.get("default")
        if "factory" in options:
            value = f"{options['factory']}()"
    if str(options.get("init")) == "False":
        return None
    keyword = kw_only or str(options.get("kw_only")) == "True"
    alias = options.get("alias")
    name = str(alias).strip("'\"") if alias is not None else attribute.name.lstrip("_")
    return griffe.Parameter(
        name,
        annotation=attribute.annotation,
        kind=griffe.ParameterKind.keyword_only
        if keyword
        else griffe.ParameterKind.positional_or_keyword,
        default=value,
        docstring=attribute.docstring,
    )


class AttrsInit(griffe.Extension):
    """Give each attrs class the ``__init__`` attrs generates."""

    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        decorator = _attrs_decorator(cls)
        if decorator is None or "__init__" in cls.members:
            return
        options = _keywords(decorator) if isinstance(decorator, griffe.ExprCall) else {}
        if str(options.get("init")) == "False":
            return
        kw_only = str(options.get("kw_only")) == "True"
        parameters = []
        for member in cls.members.values():
            if not isinstance(member, griffe.Attribute) or member.annotation is None:
                continue
            if "instance-attribute" not in member.labels:  # ClassVar, properties
                continue
            parameter = _parameter(member, kw_only)
            if parameter is not None:
                parameters.append(parameter)
        self_ = griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)
        cls.set_member(
            "__init__",
            griffe.Function(
                "__init__",
                lineno=0,
                endlineno=0,
                parent=cls,
                parameters=griffe.Parameters(self_, *parameters),
                returns="None",
            ),
        )
