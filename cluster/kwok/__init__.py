"""KWOK configuration for the embedded backend: stages, CRDs and kwokctl options."""
