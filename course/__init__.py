"""Make You Dangerous: a deep-learning course in JAX.

The ``course`` package is the library the labs import: synthetic data, plotting, the lab registry,
the stub generator (``course assign``) and the autograder (``course grade``).
"""

__version__ = "0.1.0"
