"""Chapter 4 exercise: one step of SGD with momentum, on numpy arrays, in place."""


def sgd_momentum_step(params, grads, velocities, lr, momentum):
    """For each (p, g, v): v = momentum * v + g; p -= lr * v. Update p and v in place."""
    raise NotImplementedError("write the update, then run: python tutorials/check.py 4")
