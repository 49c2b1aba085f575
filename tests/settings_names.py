"""Every SOUNDSCAPE_* variable a Settings field reads, walked independently of
docs/gen_reference.py, so the tests that compare docs with the code check the generator
too."""

from __future__ import annotations

from pydantic import BaseModel


def env_names(model: type[BaseModel], prefix: str = "SOUNDSCAPE_") -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += env_names(annotation, f"{prefix}{name.upper()}__")
        else:
            names.append(f"{prefix}{name.upper()}")
    return names
