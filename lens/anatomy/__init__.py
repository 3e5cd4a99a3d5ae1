"""Layer anatomy: per-layer measurements of one forward pass (what each block adds, which could be skipped or
swapped, how alike the layers are, where the outlier dimensions sit, what the late layers correct)."""
