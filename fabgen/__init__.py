"""fabgen: synthesize labelled fabric-defect images for unseen fabrics, and adapt a detector to them."""

__version__ = "0.1.0"
