"""Looking inside two models: the visualizer's options, the model pair (one or more
checkpoints per arm), inputs and noise, the streamed run loop and ``compare_features``,
statistics (and their one registry), similarity (CKA with its interval and null), the
denoising loss by timestep, across-sample summaries and the decision rule behind the verdicts;
and sample quality (FID, KID, precision/recall) of image sources and of checkpoints across
training.

May import: ``util``, ``core``, ``data``. Never imports ``output`` (figures, files, report)
or ``cli``: everything here returns numbers and arrays. A new statistic is an entry in
``stat_registry.py`` plus its function in ``stats.py`` or ``map_measures.py``; a new measure
between the two models goes beside ``similarity.py``.
"""
