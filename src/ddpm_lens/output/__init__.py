"""What a person reads: PNG encoding and grids, comparison figures, the run-file writers
(stats, CKA, manifest, run README, run status), matplotlib plots, the HTML report with its
template, the training-evaluation table and page, and the diffusers-folder writer.

May import: ``util``, ``core``, ``data``, ``analysis``. A new file in a run folder gets its
writer here; a new report section goes into ``report.py``'s context and the template.
"""
