"""The models a gateway serves, discovered from Triton, and how a request picks one."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from gateway.errors import ApiError, ErrorKind
from trident.model_names import bulk_twin
from trident.spec import ModelSpec
from trident.tasks import tasks_for_route


def manifest_fingerprint(spec: ModelSpec) -> str:
    return hashlib.sha256(spec.to_json().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Discovery:
    """What Triton serves: the Trident models (their manifests) and the name of every ready model."""

    specs: list[ModelSpec]
    ready: frozenset[str] = frozenset()


class ModelRegistry:
    def __init__(self, default_model: str | None = None) -> None:
        self.models: dict[str, ModelSpec] = {}
        self.default_model = default_model
        self.ready: frozenset[str] = frozenset()
        self.fingerprints: dict[str, str] = {}

    def replace(self, found: Discovery) -> None:
        self.models = {spec.name: spec for spec in found.specs}
        self.ready = found.ready
        self.fingerprints = {spec.name: manifest_fingerprint(spec) for spec in found.specs}

    def fingerprint(self, spec: ModelSpec) -> str:
        """The build of `spec` (its whole manifest): response cache keys start with it."""
        return self.fingerprints.get(spec.name) or manifest_fingerprint(spec)

    def has_bulk_lane(self, ensemble: str) -> bool:
        """Whether Triton serves the ensemble's bulk twin (a build written before the lane existed has none; a
        model of its own that happens to be named so is not one)."""
        return bulk_twin(ensemble) in self.ready and bulk_twin(ensemble) not in self.models

    def __bool__(self) -> bool:
        return bool(self.models)

    def default(self) -> ModelSpec:
        if not self.models:
            raise ApiError(ErrorKind.UNAVAILABLE, "no model is loaded yet")
        if self.default_model in self.models:
            return self.models[self.default_model]
        return next(iter(self.models.values()))

    def pick(self, name: str | None, task: str | None = None, route: str | None = None) -> ModelSpec:
        """By name; a missing or unknown name means the default model when only one is served
        (OpenAI and BEI clients send whatever name they were configured with).

        With a `route` (or a `task`), the model must serve it: 400 says which routes it serves. A request
        naming no model goes to the default model, or else to the first served model that can answer
        the route (BEI clients send no model name to /rerank or /predict).
        """
        tasks = tasks_for_route(route) if route else ((task,) if task else None)
        if name and name in self.models:
            spec = self.models[name]
        elif name and len(self.models) > 1:
            raise ApiError(ErrorKind.NOT_FOUND,
                           f"model {name!r} is not served; served: {', '.join(sorted(self.models))}", param="model")
        else:
            spec = self.default()
            if tasks and spec.task not in tasks and not name:
                spec = next((s for _, s in sorted(self.models.items()) if s.task in tasks), spec)
        if tasks and spec.task not in tasks:
            article = "an" if spec.task[0] in "aeiou" else "a"
            raise ApiError(ErrorKind.INVALID_REQUEST, f"model {spec.name!r} is {article} {spec.task} "
                           f"model: it serves {', '.join(serving_routes(spec))}, not {route or task}",
                           param="model")
        return spec


def serving_routes(spec: ModelSpec) -> list[str]:
    """The inference routes this model answers, POST / (its default route) included."""
    return [*spec.task_row.routes, f"/ (= {spec.default_route})"]
