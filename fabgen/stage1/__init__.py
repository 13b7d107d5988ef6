"""Stage 1: p(defect | texture), a Gram-conditioned R3GAN that paints defect patches + masks."""
