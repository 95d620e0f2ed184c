"""retail-ann: predict online-retail customer behaviour with Spark and a neural network."""

__version__ = "0.1.0"
