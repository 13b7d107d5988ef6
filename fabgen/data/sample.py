"""The one record format every data source yields and every model consumes.

A sample is a dict of numpy (or jax) arrays with fixed shapes, so that batches stack and jit
without retracing:

  image           uint8   [H, W, 3]   greyscale sources are replicated to three channels
  instance_mask   int32   [H, W]      0 = defect-free, k = defect instance k (1-based)
  instance_class  int32   [MAX_INSTANCES]  class id of instance k+1, -1 = padding
  boxes           float32 [MAX_BOXES, 4]   (x0, y0, x1, y1) pixels, x1/y1 exclusive: the minimal
                                           rectangle of one connected component of one instance
  box_class       int32   [MAX_BOXES]      class id of each box, -1 = padding
  box_instance    int32   [MAX_BOXES]      1-based instance each box belongs to, 0 = padding
  fabric_id       int32   []               which fabric identity the image shows (-1 if unknown)

Boxes are per connected component, not per instance: a broken end interrupted by the weave is
one defect instance but may be several boxes, as the paper labels them.
"""

MAX_INSTANCES = 4
MAX_BOXES = 16

KEYS = ("image", "instance_mask", "instance_class", "boxes", "box_class", "box_instance",
        "fabric_id")
