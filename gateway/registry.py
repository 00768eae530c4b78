"""The models a gateway serves, discovered from Triton, and how a request picks one."""

from __future__ import annotations

from gateway.errors import ApiError
from trident.spec import ModelSpec


class ModelRegistry:
    def __init__(self, default_model: str | None = None) -> None:
        self.models: dict[str, ModelSpec] = {}
        self.default_model = default_model

    def replace(self, specs: list[ModelSpec]) -> None:
        self.models = {spec.name: spec for spec in specs}

    def __bool__(self) -> bool:
        return bool(self.models)

    def default(self) -> ModelSpec:
        if not self.models:
            raise ApiError(503, "no model is loaded yet")
        if self.default_model in self.models:
            return self.models[self.default_model]
        return next(iter(self.models.values()))

    def pick(self, name: str | None, task: str | None = None) -> ModelSpec:
        """By name; a missing or unknown name means the default model when only one is served
        (OpenAI and BEI clients send whatever name they were configured with)."""
        if name and name in self.models:
            return self.models[name]
        if name and len(self.models) > 1:
            raise ApiError(404, f"model {name!r} is not served; served: {', '.join(sorted(self.models))}",
                           param="model")
        return self.default()
