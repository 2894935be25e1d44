"""edgenas: hardware-aware deployment compiler for edge devices.

The package follows the pipeline a model travels:
targets -> space -> measure/tables -> (search) -> (compression) -> (compilation) -> (artifact).
"""

__version__ = "0.1.0"
