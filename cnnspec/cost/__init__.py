"""What a network costs before it runs: memory to train it and to run it."""

from .memory import (
    FRAMEWORK_SHARE,
    OPTIMIZERS,
    SAVED,
    Liveness,
    TrainingMemory,
    fitting,
    inference_peak,
    largest_batch,
    training_memory,
)

__all__ = [
    "FRAMEWORK_SHARE",
    "OPTIMIZERS",
    "SAVED",
    "Liveness",
    "TrainingMemory",
    "fitting",
    "inference_peak",
    "largest_batch",
    "training_memory",
]
