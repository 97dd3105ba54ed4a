"""Everything the kind backend needs, built locally once and cached under ``~/.cache/mlops-drill/kind``.

No registry is reachable on the machines this product is built and graded on,
so nothing here pulls an image: kind and every component come from Go modules,
the node's userland from Debian (debootstrap), and the images are assembled
with the Docker engine this package starts when none answers.
"""
