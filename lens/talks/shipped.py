"""The talks that ship with LayerLens: the guided tour (lens/tour.py's steps), one scene per chart.

Built from the tour's steps each time, so the tour has one source of truth; the Talk page opens it as a start.
"""
from __future__ import annotations

from .format import Talk, scene_from_dict

TOUR = "tour"


def tour_talk() -> Talk:
    from ..tour import STEPS, link_query
    from ..views import view_named

    scenes = []
    for n, step in enumerate(STEPS, 1):
        for k, shown in enumerate(step.shows):
            title = step.title if len(step.shows) == 1 else f"{step.title}: {shown.title}"
            scenes.append(scene_from_dict({
                "title": title, "view": view_named(shown.view).path, "params": link_query(shown),
                "notes": f"{step.story}\n\nWhat to notice: {step.notice}" if k == 0 else step.notice,
            }, f"tour step {n}"))
    from ..model.registry import DEFAULT_MODEL  # the model the stories are written for

    return Talk(f"A tour of {DEFAULT_MODEL}, layer by layer", tuple(scenes))


SHIPPED = {TOUR: tour_talk}
