"""Images in: CelebA with the study's crop, any folder of images, your own files, and the
built-in synthetic faces (no download ever), and the labelled factors of their images
(``factors.py``).

May import: ``ddpm_lens.util``, ``ddpm_lens.core``. A new dataset is a ``_build_<name>``
function registered in ``datasets.py``.
"""
