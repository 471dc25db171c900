"""Flyball's agent-fleet simulator: a deterministic discrete-event model in virtual time.

Tenants' agents turn intents into trees of requests; gateways apply a pluggable policy
(``sim.policies``); services with slots, FIFO queues and faults serve them. ``sim.metrics`` turns a
run into goodput, waste, recovery, fairness and a per-second timeline. Entry points:
``sim.runner.run(scenario, policy)`` and ``sim.cli_sim.run_sim`` (``flyball sim``).
"""
