"""The one set of versions the embedded cluster is built from, kept in skew.

Kubernetes 1.36 is what kwok v0.8.0 is built against, and etcd 3.6.8 is the
client version Kubernetes 1.36 pins, so all pieces agree. The wrapper modules in
``toolchain/`` pin the same versions; a test checks that they agree.
"""
KUBERNETES = "v1.36.3"
ETCD = "v3.6.8"
KWOK = "v0.8.0"


def cache_key() -> str:
    """Name of the cache folder holding binaries built from these versions."""
    return f"k8s-{KUBERNETES}_etcd-{ETCD}_kwok-{KWOK}"
