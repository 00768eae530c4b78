"""The models a gateway serves, discovered from Triton, and how a request picks one."""

from __future__ import annotations

from gateway.errors import ApiError, ErrorKind
from trident.spec import ModelSpec
from trident.tasks import tasks_for_route


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
