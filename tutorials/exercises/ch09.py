"""Chapter 9 exercise: count LoRA's trainable parameters."""


def lora_parameters(shapes, r):
    """shapes: list of (out_features, in_features) weight shapes. Return the number of
    parameters LoRA trains at rank r (A: r x in, B: out x r, per weight)."""
    raise NotImplementedError("count A and B for each weight; run: python tutorials/check.py 9")
