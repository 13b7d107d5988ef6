"""GAN machinery any fabgen GAN task uses: adversarial losses, penalties, vmapped grids."""
