"""``python -m ddpm_lens ...`` runs the CLI (also under torchrun: ``torchrun -m ddpm_lens train``)."""

from ddpm_lens.cli import run_and_exit

run_and_exit()
