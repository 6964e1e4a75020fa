"""What the model (or the offline proposer) returns at each step of the loop, as pydantic schemas.

These are the JSON objects requested with structured output; the same shapes are recorded in the run's
exchange log and replayed from it.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from targets.results import CheckResult


class Draft(BaseModel):
    """A candidate as designed or revised: the reasoning, a short name and the code (ADAS's fields)."""

    thought: str = Field(description="What the candidate does and why it should beat what was tried.")
    name: str = Field(description="A short snake_case name for the candidate.")
    code: str = Field(description="The complete candidate source, following the target's interface.")


class Reflection(BaseModel):
    """One round of self-critique followed by a revised candidate (ADAS's Reflexion prompts)."""

    reflection: str = Field(description="The critique: what is not new, wrong, or against the rules.")
    thought: str = Field(description="The revised reasoning.")
    name: str = Field(description="The revised short snake_case name.")
    code: str = Field(description="The revised complete candidate source.")

    def draft(self) -> Draft:
        return Draft(thought=self.thought, name=self.name, code=self.code)


class RepairRequest(BaseModel):
    """What a repair is asked with: the version that failed, why (its failing checks and/or the traceback
    of the run that broke), and which attempt of how many this is."""

    draft: Draft
    failures: list[CheckResult]
    traceback: str | None = None
    attempt: int = Field(ge=1)
    max_attempts: int = Field(ge=1)
