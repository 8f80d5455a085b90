"""Training: the trainer, its EMA, timestep samplers and curricula (the project's and the
study's epoch stages), the study's CS regrowth and CR penalty, distributed set-up and the run
folder's log and resume rules.

May import: ``util``, ``core``, ``data``, and ``output``'s image writers (sample grids).
Never imports ``analysis`` or ``cli``. A new training mode or sampler goes here.
"""
