"""What every configuration model shares: strict scalar types and a frozen, closed base."""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict

# Strict everywhere: JSON already carries types, so "10" -> 10 or 10.0 -> 10 coercion would
# only hide mistakes. Strict floats still accept ints, and strict ints refuse bools.
Int = Annotated[int, Strict(), Field(ge=-(2**63), le=2**63 - 1)]
Float = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Str = Annotated[str, Strict()]
Bool = Annotated[bool, Strict()]

HHMM = re.compile(r"^([0-9]{2}):([0-9]{2})$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Model(BaseModel):
    """A frozen model that refuses unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_hhmm(value: str) -> time:
    """Return ``"HH:MM"`` as a time; raise ValueError when it is not one."""
    match = HHMM.match(value)
    if match is None:
        raise ValueError(value)
    return time(int(match[1]), int(match[2]))  # raises ValueError when out of range
