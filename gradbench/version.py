"""gradbench's version, in a module of its own: records, the report and the CLI carry it, and the
package's __init__ (which imports the pipeline) must not be imported back to read it."""
__version__ = "0.4.0"
