"""Why a stage's model could not be loaded, and how to fix it."""

from __future__ import annotations

from semsql.stages import model_env_var


class ModelLoadError(RuntimeError):
    """A stage's model could not be loaded; the message says which, why, and how to fix it."""

    def __init__(self, stage: str, model: str, reason: str, fix: str | None = None) -> None:
        self.stage = stage
        self.model = model
        self.reason = reason
        self.env_var = model_env_var(stage)
        self.fix = fix or (
            f"set {self.env_var} to a local folder made with `save_pretrained` "
            f"(model and processor; `semsql models download` makes one where the hub is "
            f"reachable), or {self.env_var}=off"
        )
        super().__init__(f"{stage} model {model!r} could not be loaded: {reason}. Fix: {self.fix}.")

    def __reduce__(self) -> tuple[type[ModelLoadError], tuple[str, str, str, str]]:
        return (type(self), (self.stage, self.model, self.reason, self.fix))
