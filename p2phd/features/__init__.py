"""Stage 3, bin/precompute and bin/cluster: the encoder's per-object features, their
manifest, k-means styles and the per-object style choice used at render time.
"""
