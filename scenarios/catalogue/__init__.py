"""The built-in scenario catalogue: one ``<id>.yaml`` per scenario.

A package only so that setuptools ships the YAML files (``package_data``) in wheels;
read it with :func:`mlops_drill.scenarios.loader.load_catalogue`.
"""
