"""Plumbing every stage uses: one-line user errors, atomic writes, devices, file digests,
torch work on one thread per model.

May import: the standard library, numpy and torch only (nothing else of ddpm_lens).
A new piece goes here when it knows nothing of diffusion models: a file-system helper, an
error type, a device probe.
"""
