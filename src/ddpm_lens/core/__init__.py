"""The DDPM itself: configs (ddpm-torch's and the study's schema), layers, the UNet and its one
table of layer names, the study's CS model, beta schedules, the Gaussian diffusion, checkpoint
formats (ddpm-torch, the study's, ddpm-lens', safetensors, diffusers folders) and forward hooks.

May import: ``ddpm_lens.util``. A new piece goes here when it defines what a model *is*
or how its weights are read: an architecture variant, a checkpoint format, a schedule.
"""
