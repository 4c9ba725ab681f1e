"""The record funnel (issue 16): quiz scoring, outside registrations, rules and stages.

For other features: `people_at_stage(db, meeting, stage, *, instance=None) -> (rules, people)`.
"""

from integrations.funnel.stages import people_at_stage

__all__ = ["people_at_stage"]
