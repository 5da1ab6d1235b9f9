"""Stage 1, bin/prepare: source folders -> dataset manifest; the per-sample preprocessing
(crop, flip, resize rules) that training and rendering share; the demo's toy Cityscapes.
"""
