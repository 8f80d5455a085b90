"""The DDPM itself: configs, layers, the UNet and its one table of layer names, beta
schedules, the Gaussian diffusion, checkpoint formats and forward hooks.

May import: ``ddpm_lens.util``. A new piece goes here when it defines what a model *is*
or how its weights are read: an architecture variant, a checkpoint format, a schedule.
"""
