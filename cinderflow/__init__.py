"""cinderflow: a Cinder-compatible block-storage control plane on Temporal."""

__version__ = "0.1.0"
