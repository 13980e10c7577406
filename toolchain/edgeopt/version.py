"""edgeopt's version, in a module of its own: every module may read it without importing the
package root (whose lazy API re-exports import the pipeline)."""

__version__ = "0.1.0"
