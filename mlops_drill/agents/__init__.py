"""Agents that drive a drill through the API client: ``agent(session) -> None``.

``baseline.agent`` follows the playbook generically from the briefing and what
its commands show; ``random_agent.agent`` types seeded random lines. Neither
reads the scenario (steps, hints, faults, fix checks): only the briefing and
command outputs reach them, through :class:`mlops_drill.server.client.Session`.
"""
