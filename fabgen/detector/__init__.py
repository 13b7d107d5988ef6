"""The RT-DETR-style defect detector: backbone, hybrid encoder, deformable decoder, seg head."""
