"""Seats of a shared cluster: each seat sees a whole cluster of its own through a gateway.

A seat's namespaces and nodes are real objects of the shared cluster whose
names carry the seat's prefix (``s-3f9a1c-2--serving``). The gateway strips
and adds the prefix, so the baseline, every fault, every check and every
candidate command keep the names of the product (``serving``, ``gpu-node-0``).
"""
