"""What a person reads: PNG encoding and grids, comparison figures, the run-file writers
(stats, CKA, manifest, run README), matplotlib plots, and the HTML report with its template.

May import: ``util``, ``core``, ``data``, ``analysis``. A new file in a run folder gets its
writer here; a new report section goes into ``report.py``'s context and the template.
"""
