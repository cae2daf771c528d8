"""Configuration errors: :class:`ConfigError` and the pydantic-error to one-line translation.

Validation reports its first problem as ``<json path>: <problem>, got <value>``. The models in
:mod:`engine.config_models` raise their own checks as :data:`CUSTOM_ERROR` errors (see
:func:`field_error`), and :func:`describe` turns those and pydantic's built-in errors into that
line.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import orjson
from pydantic import BaseModel
from pydantic_core import PydanticCustomError

__all__ = ["CUSTOM_ERROR", "ConfigError", "describe", "field_error"]

#: Error type of the models' own checks, so :func:`describe` can tell them from pydantic's.
CUSTOM_ERROR = "otrade_config"

_TYPE_MESSAGES = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "missing": "required key missing",
}

_MAX_SHOWN = 60


class ConfigError(Exception):
    """A configuration file could not be read, parsed or validated.

    ``str(error)`` is a single line fit for ``config error in <file>: <message>``.

    Parameters
    ----------
    message : str
        The one-line description of the first problem found.
    source : str, optional
        The file (or label) the configuration came from.
    path : str, optional
        The JSON path of the offending key, e.g. ``instruments[0].tick_size``; ``None`` when
        the problem is not about one key (unreadable file, malformed JSON).
    """

    def __init__(self, message: str, *, source: str | None = None, path: str | None = None):
        # Multi-line messages would break log lines and the CLI's one-line report.
        message = " ".join(message.split())
        super().__init__(message)
        self.message = message
        self.source = source
        self.path = path


def field_error(field: str, message: str, got: Any) -> PydanticCustomError:
    """Build an error for a model validator that must point at ``field``, not the model.

    Parameters
    ----------
    field : str
        The offending key, relative to the model, e.g. ``slow`` or ``instruments[1].symbol``.
    message : str
        The problem, without the path or the value.
    got : Any
        The offending value, shown after ``got``.

    Returns
    -------
    PydanticCustomError
        An error of type :data:`CUSTOM_ERROR` for the validator to raise.
    """
    # The template is escaped so braces in a message are never read as placeholders.
    template = message.replace("{", "{{").replace("}", "}}")
    return PydanticCustomError(CUSTOM_ERROR, template, {"field": field, "got": got})


def _show(value: Any) -> str:
    """Render a bad value the way the user wrote it: repr for strings, JSON for the rest."""
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, BaseModel):
        text = orjson.dumps(value.model_dump(mode="json")).decode()
    else:
        try:
            text = orjson.dumps(value).decode()
        except TypeError:
            text = repr(value)
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 3] + "..."
    return text


def _json_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = part
    return out or "<root>"


def _is_nullable(loc: tuple[int | str, ...], model: type[BaseModel] | None) -> bool:
    """Whether the field at ``loc`` under ``model`` accepts null, so its message can say so."""
    annotation: Any = None
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return False
        annotation = model.model_fields[part].annotation
        model = next(
            (
                arg
                for arg in (annotation, *typing.get_args(annotation))
                if isinstance(arg, type) and issubclass(arg, BaseModel)
            ),
            None,
        )
    origin = typing.get_origin(annotation)
    return origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(annotation)


def describe(error: Any, model: type[BaseModel]) -> tuple[str, str]:
    """Turn one pydantic error into ``(json path, one-line message)``.

    Parameters
    ----------
    error : Any
        One entry of ``ValidationError.errors()``.
    model : type of BaseModel
        The model that was validated; its fields tell which keys accept null.

    Returns
    -------
    tuple of (str, str)
        The JSON path of the offending key (``<root>`` for the document itself), and the
        message ``<json path>: <problem>, got <value>``.
    """
    kind: str = error["type"]
    loc: tuple[int | str, ...] = tuple(error["loc"])
    ctx: dict[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    show_value = True

    if kind == CUSTOM_ERROR:
        field = ctx.get("field")
        if field is not None:
            # Model validators report at the model; move the error to the field it is about.
            loc = loc + (field,)
            value = ctx.get("got")
        problem = error["msg"]
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op, key = {
            "greater_than": (">", "gt"),
            "greater_than_equal": (">=", "ge"),
            "less_than": ("<", "lt"),
            "less_than_equal": ("<=", "le"),
        }[kind]
        bound = ctx[key]
        # Float fields carry float bounds; "> 0" reads better than "> 0.0" for whole numbers.
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        problem = f"must be {op} {_show(bound)}"
    elif kind == "literal_error":
        # pydantic joins the choices as "'a', 'b' or 'c'"; a plain list reads better here.
        problem = "must be one of " + str(ctx["expected"]).replace(" or ", ", ")
    elif kind == "extra_forbidden":
        problem, show_value = "unknown key", False
    elif kind == "missing":
        problem, show_value = "required key missing", False
    elif kind in ("string_too_short", "too_short"):
        minimum = ctx.get("min_length", 1)
        if kind == "string_too_short" and minimum == 1:
            problem = "must not be empty"
        else:
            unit = "character" if kind == "string_too_short" else "entry"
            problem = f"must have at least {minimum} {unit}{'' if minimum == 1 else 's'}"
        if kind == "too_short":
            value = ctx.get("actual_length", value)
    elif kind in ("string_too_long", "too_long"):
        unit = "characters" if kind == "string_too_long" else "entries"
        problem = f"must have at most {ctx.get('max_length')} {unit}"
        if kind == "too_long":
            value = ctx.get("actual_length", value)
    elif kind in _TYPE_MESSAGES:
        problem = _TYPE_MESSAGES[kind]
        if _is_nullable(loc, model):
            problem += " or null"
        # The root is always an object in a well-formed file; echoing it helps nobody.
        show_value = bool(loc)
    else:
        problem = error["msg"]

    path = _json_path(loc)
    message = f"{path}: {problem}"
    if show_value:
        message += f", got {_show(value)}"
    return path, message
