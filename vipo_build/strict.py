"""The base of every pydantic model of the project: configs, records and reports reject unknown
fields, so a typo in a YAML key or a record from another version is an error, not a silent default."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FrozenModel(StrictModel):
    """Also immutable: category files and registry entries, loaded once and shared."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# json_schema_extra of a config field that changes where or how fast a run goes, never what it
# writes: a root resumes across a change of it (the drift check and the config hash leave it out).
RUNTIME_ONLY = {"runtime_only": True}
