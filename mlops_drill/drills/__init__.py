"""Instructor-led group drills: one scenario, many seats, a live dashboard and a debrief.

Why a server at all: the instructor must see every seat while the drill runs and
debrief on what the group skipped, and candidates must never hold the answer
key. So the server owns the seats' clusters, the grading and the fix checks;
a seat only gets its kubeconfig, the symptom-only briefing and an endpoint to
stream its transcript to.

Seat isolation in this cut: ONE EMBEDDED CLUSTER PER SEAT (``seat-<drill>-<n>``).
Each seat's kubeconfig is the engine's candidate kubeconfig of its own cluster,
so another seat's API server does not even know its token (401), and the
engine namespace of its own cluster is refused by RBAC (403). The issue's other
mode, many seats as namespaces of ONE shared cluster, is not built: the
platform manifests, the faults and the candidate RBAC all use fixed namespace
names (``serving``, ``features``, ... and ``mlops-drill-system``), and making
them per-seat touches every fault. Per-seat clusters cost about one control
plane plus the platform's processes per seat, so a 2-core machine holds a few
seats, not 50 (figures: ``bench/drill_load.py``).

Transcripts: ``mlops-drill join`` opens the ordinary recorded shell on a local
JSONL file and a forwarder thread tails that file and POSTs new events to the
server, which accepts them only if they continue the seat's hash chain. The
server adds its own fix-check results (seats cannot post ``verification``
events) and grades the union on every dashboard poll.
"""
