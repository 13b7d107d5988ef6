"""GAN machinery any fabgen GAN task uses: the D-then-G update (step.py), adversarial losses and
penalties (losses.py), vmapped grids of runs (grid_task.py)."""
