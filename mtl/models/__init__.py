"""Multi-task models by name, and `build_model` to make one from specs plus validated overrides.

    model = build_model("mmoe", inputs=schema.inputs, heads=schema.heads, overrides={"n_experts": 8})
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from mtl.models.blocks import MultiTaskModel
from mtl.models.mmoe import MMoE, MMoEConfig
from mtl.models.ple import CGC, PLE, PLEConfig
from mtl.models.shared_bottom import SharedBottom, SharedBottomConfig
from mtl.spec import HeadSpec, InputSpec

__all__ = [
    "CGC",
    "MODELS",
    "PLE",
    "MMoE",
    "MMoEConfig",
    "ModelConfigClass",
    "MultiTaskModel",
    "PLEConfig",
    "SharedBottom",
    "SharedBottomConfig",
    "build_model",
]

ModelConfigClass = type[SharedBottomConfig] | type[MMoEConfig] | type[PLEConfig]

MODELS: dict[str, tuple[ModelConfigClass, type[MultiTaskModel]]] = {
    "shared_bottom": (SharedBottomConfig, SharedBottom),
    "mmoe": (MMoEConfig, MMoE),
    "ple": (PLEConfig, PLE),
}

# Set by build_model's own arguments, never by overrides.
_SPEC_FIELDS = frozenset({"inputs", "heads"})


def build_model(
    name: str,
    *,
    inputs: InputSpec,
    heads: tuple[HeadSpec, ...],
    overrides: Mapping[str, Any] | None = None,
) -> MultiTaskModel:
    """The model `name` with its default config, `overrides` applied (validated by the config).

    Lists in `overrides` become tuples, since TOML arrays load as lists and configs are frozen.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}.")
    config_class, model_class = MODELS[name]
    config = config_class(inputs=inputs, heads=heads)
    if overrides:
        allowed = sorted(f.name for f in dataclasses.fields(config) if f.name not in _SPEC_FIELDS)
        unknown = sorted(set(overrides) - set(allowed))
        if unknown:
            raise ValueError(
                f"unknown override(s) {unknown} for model {name!r}; allowed keys: {allowed}. "
                "inputs and heads come from the schema, not from overrides."
            )
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
        config = dataclasses.replace(config, **values)
    return model_class(config)
