"""Chapter 6 exercise: gradient clipping by total norm, on numpy arrays."""


def clip_by_total_norm(grads, max_norm):
    """Scale all arrays in place so their joint L2 norm is at most max_norm; return the
    norm before clipping."""
    raise NotImplementedError("compute the total norm and rescale; run: python tutorials/check.py 6")
