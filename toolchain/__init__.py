"""edgeopt: a fine-tuned model to a validated INT8 artifact for one edge device, in one command."""

__version__ = "0.1.0"
