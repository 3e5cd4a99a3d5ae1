"""Talks a speaker builds: scenes (a page's URL state with a title, notes and a question), kept as JSON files,
played in the Talk page and exported as one self-contained HTML deck (``python -m lens talk``)."""
from .format import (MAX_BYTES, MAX_SCENES, Scene, Talk, file_name, load_named, load_talk, parse_talk, save_named,
                     save_talk, saved_talks, scene_from_dict, scene_from_url, scene_query, talk_from_dict, talks_dir)
from .links import Resolved, canonical_view, draw, page_link, resolve
from .shipped import SHIPPED, TOUR, tour_talk

__all__ = ["MAX_BYTES", "MAX_SCENES", "Scene", "Talk", "canonical_view", "file_name", "load_named", "load_talk",
           "parse_talk", "save_named", "save_talk", "saved_talks", "scene_from_dict", "talk_from_dict", "talks_dir",
           "Resolved", "draw", "page_link", "resolve", "scene_from_url", "scene_query", "SHIPPED", "TOUR",
           "tour_talk"]
