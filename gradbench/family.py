"""What a model family is and what building one gives, apart from the families: models.py (the toys and the
registry of all families) imports zoo/ (the reference families), so zoo/ takes these from here, not from
models.py (no import circle)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class Built:
    """What a family (or a user's factory) builds for one size: the model, ``make_input(batch_size)`` (a
    tensor, a tuple of tensors passed positionally, or a dict of tensors passed as keywords; built on the
    CPU in float32, gradbench moves and casts it), and the train step's loss, ``loss(output, batch)`` with
    ``batch`` what make_input returned, moved (None: the mean of squares of every output tensor)."""

    model: nn.Module
    make_input: Callable
    loss: Callable | None = None

    def __iter__(self):  # (model, make_input) = build_model(...) as before the zoo
        return iter((self.model, self.make_input))

    def __getitem__(self, index):  # build_model(...)[0] as before the zoo
        return (self.model, self.make_input)[index]


@dataclass(frozen=True)
class Family:
    """A built-in model family: its sizes and how one is built. ``inputs`` says which input axis it takes:
    "seq_len" (text: --seq-len, recorded as seq_len), "image_size" (--image-size), or None (fixed inputs).
    ``extra``: the pip extra its code needs (None: torch alone). ``build(size, seq_len=, image_size=)``
    returns a Built; it is only called with the axis the family takes."""

    name: str
    sizes: tuple[str, ...]
    build: Callable[..., Built]
    inputs: str | None = None
    default_input: int | None = None
    extra: str | None = None
    source: str = "gradbench"
    description: str = ""
