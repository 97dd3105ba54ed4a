"""Scenarios: the schema of scenario files, their loader, and the built-in catalogue.

A scenario is plain data (see ``README.md`` beside this file and the published
``scenario.schema.json``); the engine injects its faults, the grader maps a
candidate's commands onto its expected steps.
"""
from mlops_drill.scenarios.loader import catalogue_dir, load_catalogue, load_scenario
from mlops_drill.scenarios.schema import Matcher, Scenario, Topic

__all__ = ["Matcher", "Scenario", "Topic", "catalogue_dir", "load_catalogue", "load_scenario"]
