"""Recording shims: the stdlib-only body every recorded tool runs through."""
