"""Chapter 4 reference solution."""


def sgd_momentum_step(params, grads, velocities, lr, momentum):
    for p, g, v in zip(params, grads, velocities):
        v *= momentum
        v += g
        p -= lr * v
